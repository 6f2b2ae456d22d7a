"""``gitops-sandbox``: run one local stand-in service in the foreground."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Each service is a module of this package with its own ``main(argv) -> int``.
SERVICES = {
    "registry": ("steps.sandbox.registry", "an OCI registry (Debian's docker-registry)"),
    "git": ("steps.sandbox.gitserver", "a Git server over HTTP (git http-backend)"),
    "kube": ("steps.sandbox.kube", "a Kubernetes API emulator with controllers and a fake kubelet"),
    "gcp": ("steps.sandbox.gcp", "a GCE metadata server and a GKE Container API stand-in"),
    "demo": ("steps.sandbox.demo", "update-manifest on the bundled example, with a registry"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: gitops-sandbox SERVICE [options]\n\nservices:")
        for name, (_, about) in SERVICES.items():
            print(f"  {name:10} {about}")
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SERVICES:
        print(f"gitops-sandbox: error: unknown service {name!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(SERVICES[name][0])
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
