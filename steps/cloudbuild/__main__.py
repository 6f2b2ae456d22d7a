"""``gitops-cloudbuild``: validate, run, rerun and demo (see steps/cloudbuild/)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "validate": ("steps.cloudbuild.validate", "check a config as Cloud Build would"),
    "run": ("steps.cloudbuild.run", "run a config locally"),
    "rerun": ("steps.cloudbuild.rerun", "run a recorded build again, exactly"),
    "demo": ("steps.cloudbuild.demo", "the whole pipeline in the local sandbox"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: gitops-cloudbuild COMMAND [options]\n\ncommands:")
        for name, (_, about) in COMMANDS.items():
            print(f"  {name:9} {about}")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"gitops-cloudbuild: error: unknown command {name!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
