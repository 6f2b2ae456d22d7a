"""``gitops-sandbox deploy --dir DIR APP``: your own app through the whole pipeline.

With a sandbox running (``gitops-sandbox up --dir DIR``), commits the app in
directory ``APP`` to the sandbox's app repo (its files replace the example's;
the repo keeps ``cloudbuild/app.yaml`` as its ``cloudbuild.yaml`` unless
``APP`` has its own), runs that build as the app repo's trigger would (tests,
image build and push, manifests pinned by digest, push to ``candidate``),
waits for the env build the push triggers (apply, wait, judge, promote) and
prints what happened and the history.

``APP`` needs what ``cloudbuild/app.yaml`` expects: a ``Dockerfile``, its
tests (``requirements.txt`` or ``pyproject.toml``), and manifests or
templates in ``k8s/`` naming the image ``us-docker.pkg.dev/${PROJECT_ID}/apps/NAME``
(``--image NAME``, default ``hello``), exactly as on Google Cloud: the build
renames it to the sandbox registry and pins it by digest.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from steps.lib.errors import CheckFailed, UsageError
from steps.sandbox import up as sandbox

SKIP = (".git", ".venv", "__pycache__", ".pytest_cache", "test-results", "out", "*.pyc")
BUILD_TIMEOUT = 600.0


def commit_app(app_repo: str, app: Path, message: str) -> str:
    """Make ``main`` of ``app_repo`` hold exactly ``app`` (plus the pipeline's
    cloudbuild.yaml unless the app has one); the new commit."""
    with tempfile.TemporaryDirectory(prefix="gitops-sandbox-deploy-") as tmp:
        work = Path(tmp) / "app"
        sandbox.git("clone", "--quiet", "--branch", "main", app_repo, str(work))
        pipeline_config = (work / "cloudbuild.yaml").read_text()
        for entry in work.iterdir():
            if entry.name == ".git":
                continue
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        shutil.copytree(app, work, ignore=shutil.ignore_patterns(*SKIP), dirs_exist_ok=True)
        if not (work / "cloudbuild.yaml").exists():
            (work / "cloudbuild.yaml").write_text(pipeline_config)
        sandbox.git("add", "--all", cwd=work)
        sandbox.git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        sandbox.git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
        return sandbox.git("rev-parse", "HEAD", cwd=work).strip()


def deploy(root: Path, app: Path, image: str, timeout: float) -> int:
    from steps.cloudbuild.demo import Pipeline, _print_history

    if not (app / "Dockerfile").is_file():
        raise UsageError(f"{app}: no Dockerfile (cloudbuild/app.yaml builds the image from it)")
    pipeline = Pipeline(root)
    before = len(pipeline.env_builds())
    commit = commit_app(pipeline.values["APP_REPO_DIR"], app, f"Deploy {app.name}")
    say(f"app build for {commit[:12]} ({app} as the app repo's main)")
    build, lines = pipeline.app_build(commit, {"_IMAGE": image})
    for line in lines:
        print(line, file=sys.stderr)
    if build.status != "SUCCESS":
        raise CheckFailed(f"app build {build.build_id}: {build.status} (see the lines above)")
    if len(pipeline.env_builds()) == before:
        say("the manifests did not change: nothing pushed to candidate, no env build")
        return 0
    say("pushed to candidate: waiting for the env build it triggered")
    try:
        record = pipeline.wait_env_builds(before + 1, timeout)[-1]
    except TimeoutError as exc:
        raise CheckFailed(str(exc)) from None
    sys.stderr.write(Path(str(record["log"])).read_text(errors="replace"))
    _print_history(pipeline)
    say(f"env build {record.get('build_id')}: {record['status']}")
    return 0 if record["status"] == "SUCCESS" else 1


def say(message: str) -> None:
    print(f"gitops-sandbox deploy: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gitops-sandbox deploy",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("app", metavar="APP", type=Path, help="your app's directory")
    parser.add_argument("--dir", required=True, help="the directory given to gitops-sandbox up")
    parser.add_argument(
        "--image", default="hello", help="the image's name, as k8s/ names it (default hello)"
    )
    parser.add_argument(
        "--timeout", type=float, default=BUILD_TIMEOUT, help="seconds to wait for the env build"
    )
    args = parser.parse_args(argv)

    def body() -> int:
        if not args.app.is_dir():
            raise UsageError(f"{args.app}: not a directory")
        sandbox.provide_python_base()
        return deploy(Path(args.dir), args.app.resolve(), args.image, args.timeout)

    return sandbox.run_command_body("gitops-sandbox deploy", body)


if __name__ == "__main__":
    sys.exit(main())
