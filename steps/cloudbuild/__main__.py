"""``gitops-cloudbuild``: validate, run, rerun and demo (see steps/cloudbuild/)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.lib.cli import run_command

COMMANDS = {
    "validate": ("steps.cloudbuild.validate", "check a config as Cloud Build would"),
    "run": ("steps.cloudbuild.run", "run a config locally"),
    "rerun": ("steps.cloudbuild.rerun", "run a recorded build again, exactly"),
    "demo": ("steps.cloudbuild.demo", "the whole pipeline in the local sandbox"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("gitops-cloudbuild", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
