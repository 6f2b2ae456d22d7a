"""gitops-update-manifest: pin new images in Kubernetes manifests, losslessly.

Two modes:
  --in-place PATH...   edit manifests where they are
  --from DIR --to DIR  render a directory (``*.tpl`` templates included) into another

The flow: flags -> rules -> read only the files that can contain an image
(a cheap byte search) -> plan every change -> verify -> write all or nothing.

This module is the flags; the work is in ``steps.lib.manifest_update``,
imported once the flags are parsed, so that ``--help`` costs little more than
starting Python.
"""

from __future__ import annotations

from collections.abc import Sequence

from steps.lib.cli import StepParser, StepRun, add_common_options, run_step, version_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STEP = "update-manifest"

DESCRIPTION = """\
Pin new images in Kubernetes manifests without touching anything else.

examples:
  gitops-update-manifest --in-place k8s/ --image us-docker.pkg.dev/p/r/app:v2
  gitops-update-manifest --from k8s --to out/manifests --set PROJECT_ID=my-proj \\
      --image us-docker.pkg.dev/p/r/app:$SHORT_SHA --resolve-digests
  gitops-update-manifest --in-place values.yaml --image flux-system:app=ghcr.io/o/app:1.4

--image forms:
  REF          replace every container image whose repository is REF's
  OLD=REF      replace images of repository OLD (renaming allowed)
  NS:NAME=REF  update values marked # {"$imagepolicy": "NS:NAME[:tag|:name|:digest]"}
"""


# --------------------------------------------------------------------------- command line


def build_parser() -> StepParser:
    parser = StepParser(prog="gitops-update-manifest", description=DESCRIPTION)
    parser.add_option(
        "--in-place",
        nargs="+",
        metavar="PATH",
        help="files or directories (walked for *.yaml, *.yml) to edit where they are",
    )
    parser.add_option(
        "--from",
        dest="source",
        metavar="DIR",
        help="directory of manifests and *.tpl templates to render into --to",
    )
    parser.add_option("--to", metavar="DIR", help="output directory for --from")
    parser.add_option(
        "--image",
        action="append",
        nargs="+",
        metavar="REF",
        help="image to pin: REF, OLD=REF or NS:NAME=REF (repeatable)",
    )
    parser.add_option(
        "--set",
        dest="values",
        action="append",
        nargs="+",
        metavar="NAME=VALUE",
        help="value for ${NAME} in *.tpl templates (repeatable)",
    )
    parser.add_option(
        "--resolve-digests",
        action="store_true",
        help="replace each tag by the digest the registry serves for it",
    )
    parser.add_option(
        "--keep-tag", action="store_true", help="with --resolve-digests, write repo:tag@sha256:..."
    )
    parser.add_option(
        "--insecure-registry",
        action="append",
        nargs="+",
        metavar="HOST:PORT",
        help="registry reached over plain HTTP (a local registry)",
    )
    parser.add_option(
        "--allow-unmatched", action="store_true", help="do not fail when an --image matches nothing"
    )
    parser.add_option(
        "--kustomize",
        action="append",
        nargs="+",
        metavar="ENV=DIR",
        help="with --from: render the Kustomize overlay DIR (under --from) into --to/ENV/",
    )
    parser.add_option("--clean", action="store_true", help="replace a non-empty --to directory")
    parser.add_option(
        "--dry-run", action="store_true", help="print the changes but write no manifest"
    )
    add_common_options(parser)
    parser.add_argument("--version", action="version", version=version_text())
    return parser


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    from steps.lib.manifest_update import update_manifests  # the work: only after the flags

    return update_manifests(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
