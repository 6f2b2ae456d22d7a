"""``gitops-sandbox down --dir DIR``: stop what ``gitops-sandbox up`` started there.

Triggered builds still running first, then the services; each by the pid
file ``up`` wrote, and only if that pid is still one of the sandbox's
processes. Running it again, or on a directory with nothing running, is fine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from steps.sandbox.up import down


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gitops-sandbox down", description=__doc__)
    parser.add_argument("--dir", required=True, help="the directory given to gitops-sandbox up")
    args = parser.parse_args(argv)
    down(Path(args.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
