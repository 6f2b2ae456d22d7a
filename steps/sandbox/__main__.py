"""``gitops-sandbox``: run one local stand-in service in the foreground."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from steps.lib.cli import run_command

# Each service is a module of this package with its own ``main(argv) -> int``.
SERVICES = {
    "registry": ("steps.sandbox.registry", "an OCI registry (Debian's docker-registry)"),
    "git": ("steps.sandbox.gitserver", "a Git server over HTTP (git http-backend)"),
    "kube": ("steps.sandbox.kube", "a Kubernetes API emulator with controllers and a fake kubelet"),
    "gcp": ("steps.sandbox.gcp", "a GCE metadata server and a GKE Container API stand-in"),
    "demo": ("steps.sandbox.demo", "update-manifest on the bundled example, with a registry"),
    "up": ("steps.sandbox.up", "all of them in the background, with app and env repos"),
    "deploy": ("steps.sandbox.deploy", "your app through the whole pipeline, in a sandbox up runs"),
    "down": ("steps.sandbox.down", "stop what up started"),
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command("gitops-sandbox", SERVICES, argv)


if __name__ == "__main__":
    sys.exit(main())
