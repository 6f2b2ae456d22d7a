"""``gitops-cloudbuild demo``: the whole pipeline, for real, in the local sandbox.

Starts the sandbox (``gitops-sandbox up``) in a temporary or given directory,
runs the app repo's ``cloudbuild.yaml`` for its first commit (tests, image
build and push, manifests pinned by digest, push to ``candidate``), lets that
push trigger the env repo's ``cloudbuild.yaml`` (apply, wait, judge,
promote), waits for it, then prints both histories and the image the cluster
runs. The sandbox is stopped at the end unless ``--keep``.

``Pipeline`` is the same machinery for the end-to-end tests: commits to the
app repo, app builds, the triggered env builds, and what the env repo and the
cluster say afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from steps.errors import StepError
from steps.sandbox import triggers
from steps.sandbox import up as sandbox

APP_TIMEOUT = 600.0


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


class Pipeline:
    """A running sandbox, seen from the pipeline: app commits, builds, histories, cluster."""

    def __init__(self, root: Path) -> None:
        self.layout = sandbox.Layout(Path(root).resolve())
        self.values = sandbox.read_env(self.layout.root)
        self._count = 0
        self._lock = threading.Lock()

    def _scratch(self, prefix: str) -> Path:
        with self._lock:
            self._count += 1
            path = self.layout.builds / f"{prefix}-{self._count:03d}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- the app repo

    def app_commit(
        self, files: Mapping[str, str], message: str, *, base: str = "main", push: bool = True
    ) -> str:
        """Commit ``files`` (path -> text) on the app repo's ``base``; the new sha."""
        work = self._scratch("app-work") / "app"
        sandbox.git("clone", "--quiet", "--branch", base, self.values["APP_REPO_DIR"], str(work))
        for name, text in files.items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        sandbox.git("add", "--all", cwd=work)
        sandbox.git("commit", "--quiet", "-m", message, cwd=work)
        if push:
            sandbox.git("push", "--quiet", "origin", f"HEAD:refs/heads/{base}", cwd=work)
        return sandbox.git("rev-parse", "HEAD", cwd=work).strip()

    def app_file(self, name: str, ref: str = "main") -> str:
        return sandbox.git("--git-dir", self.values["APP_REPO_DIR"], "show", f"{ref}:{name}")

    def app_build(self, commit: str) -> tuple[Any, list[str]]:
        """Run the app repo's cloudbuild.yaml at ``commit``, as its trigger would.

        The build record and the build's output lines.
        """
        from steps.cloudbuild.run import run_build

        source = self._scratch("app-build") / "source"
        sandbox.git("clone", "--quiet", "--no-checkout", self.values["APP_REPO_DIR"], str(source))
        sandbox.git("-C", str(source), "checkout", "--quiet", commit)
        subs = {
            **sandbox.substitutions(self.values, "app"),
            "COMMIT_SHA": commit,
            "BRANCH_NAME": "main",
            "REPO_NAME": "app",
        }
        lines: list[str] = []
        build = run_build(
            source / "cloudbuild.yaml",
            source,
            substitutions=subs,
            engine=self.values.get("ENGINE", "process"),
            secret_env_file=Path(self.values["SECRET_ENV_FILE"]),
            records_dir=self.layout.builds / "records",
            # update-manifest reaches the loopback registry over plain HTTP.
            extra_env={"GITOPS_INSECURE_REGISTRY": self.values["REGISTRY"]},
            log=lines.append,
        )
        return build, lines

    # -- the env repo and its trigger

    def env_builds(self) -> list[dict[str, Any]]:
        return triggers.builds(self.layout.root)

    def wait_env_builds(self, count: int, timeout: float = APP_TIMEOUT) -> list[dict[str, Any]]:
        return triggers.wait_for_builds(self.layout.root, count, timeout)

    def rerun_env_build(self, commit: str) -> int:
        """``gcloud builds triggers run env-candidate --sha=COMMIT``: the rollback path."""
        engine = self.values.get("ENGINE", "process")
        return triggers.start_build(self.layout, commit, engine=engine)

    def log(self, branch: str, fmt: str = "%H %s") -> list[str]:
        env_dir = self.values["ENV_REPO_DIR"]
        if not sandbox.git("--git-dir", env_dir, "branch", "--list", branch).strip():
            return []
        out = sandbox.git("--git-dir", env_dir, "log", f"--format={fmt}%x1e", branch)
        return [entry.strip("\n") for entry in out.split("\x1e") if entry.strip()]

    def tip(self, branch: str) -> str | None:
        entries = self.log(branch, "%H")
        return entries[0] if entries else None

    def show(self, ref: str, path: str) -> str:
        return sandbox.git("--git-dir", self.values["ENV_REPO_DIR"], "show", f"{ref}:{path}")

    # -- the registry and the cluster

    def registry_tags(self, repository: str = f"{sandbox.PROJECT_ID}/apps/hello") -> list[str]:
        import json
        import urllib.error
        import urllib.request

        url = f"http://{self.values['REGISTRY']}/v2/{repository}/tags/list"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return sorted(json.load(answer).get("tags") or [])
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise

    def registry_digest(
        self, tag: str, repository: str = f"{sandbox.PROJECT_ID}/apps/hello"
    ) -> str:
        import urllib.request

        from steps.sandbox.registry import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST

        request = urllib.request.Request(
            f"http://{self.values['REGISTRY']}/v2/{repository}/manifests/{tag}",
            method="HEAD",
            headers={"Accept": ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST))},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return str(answer.headers["Docker-Content-Digest"])

    def cluster(self) -> dict[str, Any]:
        """What runs: the hello Deployment's image and annotations, its pods' image ids."""
        from kubernetes import client, config

        api = config.new_client_from_config(self.values["KUBECONFIG"])  # type: ignore[no-untyped-call]
        try:
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            deployment: Any = apps.read_namespaced_deployment("hello", "default")
            pods: list[Any] = core.list_namespaced_pod("default", label_selector="app=hello").items
        finally:
            api.close()
        template: Any = deployment.spec.template
        running = [
            status.image_id
            for pod in pods
            if pod.metadata.deletion_timestamp is None and pod.status.container_statuses
            for status in pod.status.container_statuses
            if status.ready
        ]
        return {
            "image": template.spec.containers[0].image,
            "annotations": dict(template.metadata.annotations or {}),
            "running": sorted(set(running)),
            "ready": deployment.status.ready_replicas or 0,
        }


@contextlib.contextmanager
def running_sandbox(
    root: Path | None, *, keep: bool = False, fast: bool = True
) -> Iterator[Pipeline]:
    """``gitops-sandbox up`` in ``root`` (else a temp dir) for the block; down after."""
    made = root is None
    directory = Path(tempfile.mkdtemp(prefix="gitops-demo-")) if root is None else Path(root)
    ports: dict[str, int] = {}
    sandbox.up(sandbox.Options(directory, ports, fast=fast))
    try:
        yield Pipeline(directory)
    finally:
        if keep:
            say(f"sandbox kept running in {directory}: gitops-sandbox down --dir {directory}")
        else:
            sandbox.down(directory)
            if made:
                shutil.rmtree(directory, ignore_errors=True)


def _print_history(pipeline: Pipeline) -> None:
    from steps.history import main as history

    for branch in ("candidate", "production"):
        print(f"\n== {branch}")
        for entry in pipeline.log(branch, "%h %ad %s"):
            print(f"  {entry}")
    print("\n== gitops-history", flush=True)
    history(["--repo", pipeline.values["ENV_REPO_DIR"], "--path", sandbox.ENV_PATH])
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gitops-cloudbuild demo", description=__doc__)
    parser.add_argument("--dir", help="run the sandbox here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    parser.add_argument("--timeout", type=float, default=APP_TIMEOUT, help="seconds per build")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        sandbox.provide_python_base()
        with running_sandbox(Path(args.dir) if args.dir else None, keep=args.keep) as pipeline:
            commit = pipeline.values["APP_FIRST_COMMIT"]
            say(f"app build for {commit[:12]} (app repo's cloudbuild.yaml)")
            build, lines = pipeline.app_build(commit)
            for line in lines:
                print(line, file=sys.stderr)
            if build.status != "SUCCESS":
                say(f"app build {build.build_id}: {build.status}")
                return 1
            say("push to candidate: waiting for the triggered env build")
            records = pipeline.wait_env_builds(1, args.timeout)
            env_log = Path(records[-1]["log"]).read_text(errors="replace")
            sys.stderr.write(env_log)
            _print_history(pipeline)
            cluster = pipeline.cluster()
            print(f"\n== cluster: Deployment/hello runs {cluster['image']}")
            for image_id in cluster["running"]:
                print(f"  ready pods run {image_id}")
            status = records[-1]["status"]
            say(f"env build {records[-1].get('build_id')}: {status}")
            say(f"done in {time.monotonic() - started:.1f}s")
            return 0 if status == "SUCCESS" else 1
    except StepError as exc:
        print(f"gitops-cloudbuild demo: error: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
