"""``gitops-cloudbuild demo``: the whole pipeline, for real, in the local sandbox.

Starts the sandbox (``gitops-sandbox up``) in a temporary or given directory
and tells the story the product exists for, each release going through the
app repo's ``cloudbuild.yaml`` (tests, image build and push, manifests pinned
by digest, push to ``candidate``) and the env build that push triggers (apply,
wait, judge, promote): release 1 reaches ``production``; release 2's pods
crash, so its env build fails fast with the reason and rolls back; release 3
is healthy; re-running release 1's env build rolls back to it, and
``production`` records a rollback. Then both histories, gitops-history's
table, and the history page, kept in ``out/demo/history.html`` (its path is
the last line). The sandbox is stopped at the end unless ``--keep``.

``Pipeline`` is the same machinery for the end-to-end tests: commits to the
app repo, app builds, the triggered env builds, and what the env repo and the
cluster say afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from steps.lib.errors import CheckFailed, InternalError
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

    def app_build(
        self, commit: str, extra: Mapping[str, str] | None = None
    ) -> tuple[Any, list[str]]:
        """Run the app repo's cloudbuild.yaml at ``commit``, as its trigger would, with
        ``extra`` substitutions. The build record and the build's output lines."""
        from steps.cloudbuild.run import run_build

        source = self._scratch("app-build") / "source"
        sandbox.git("clone", "--quiet", "--no-checkout", self.values["APP_REPO_DIR"], str(source))
        sandbox.git("-C", str(source), "checkout", "--quiet", commit)
        subs = {
            **sandbox.substitutions(self.values, "app"),
            "COMMIT_SHA": commit,
            "BRANCH_NAME": "main",
            "REPO_NAME": "app",
            **(extra or {}),
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

    def rerun_env_build(self, commit: str, branch: str = triggers.BRANCH) -> int:
        """``gcloud builds triggers run TRIGGER --sha=COMMIT``: the rollback path. ``branch``
        names the trigger: the one on it (in a chain, ``staging`` is production's)."""
        engine = self.values.get("ENGINE", "process")
        return triggers.start_build(self.layout, commit, engine=engine, branch=branch)

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

    def cluster(self, namespace: str = "default") -> dict[str, Any]:
        """What runs: the hello Deployment's image and annotations, its pods' image ids."""
        from kubernetes import client, config

        api = config.new_client_from_config(self.values["KUBECONFIG"])  # type: ignore[no-untyped-call]
        try:
            apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
            deployment: Any = apps.read_namespaced_deployment("hello", namespace)
            pods: list[Any] = core.list_namespaced_pod(namespace, label_selector="app=hello").items
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
    root: Path | None, *, keep: bool = False, fast: bool = True, chain: bool = False
) -> Iterator[Pipeline]:
    """``gitops-sandbox up`` in ``root`` (else a temp dir) for the block; down after."""
    made = root is None
    directory = Path(tempfile.mkdtemp(prefix="gitops-demo-")) if root is None else Path(root)
    ports: dict[str, int] = {}
    sandbox.up(sandbox.Options(directory, ports, fast=fast, chain=chain))
    try:
        yield Pipeline(directory)
    finally:
        if keep:
            say(f"sandbox kept running in {directory}: gitops-sandbox down --dir {directory}")
        else:
            sandbox.down(directory)
            if made:
                shutil.rmtree(directory, ignore_errors=True)


CRASH = "sandbox.gitops-steps.dev/behavior"
PAGE = sandbox.REPO / "out" / "demo" / "history.html"


def _print_history(pipeline: Pipeline) -> None:
    from steps.history import main as history

    for branch in ("candidate", "production"):
        print(f"\n== {branch}")
        for entry in pipeline.log(branch, "%h %s"):
            print(f"  {entry}")
    print("\n== gitops-history", flush=True)
    history(["--repo", pipeline.values["ENV_REPO_DIR"], "--path", sandbox.ENV_PATH])
    sys.stdout.flush()


def greeting_release(pipeline: Pipeline, name: str, also: Mapping[str, str] | None = None) -> str:
    """A new release of the app: it greets from ``name`` (its test follows), with the
    files in ``also`` (path -> text); the commit, pushed to main."""
    old = re.compile(r"Hello(?: from \w+)?, ")
    app = old.sub(f"Hello from {name}, ", pipeline.app_file("app.py"))
    test = old.sub(f"Hello from {name}, ", pipeline.app_file("test_app.py"))
    files = {"app.py": app, "test_app.py": test, **(also or {})}
    return pipeline.app_commit(files, f"Greet from {name}")


def crashing_release(pipeline: Pipeline) -> str:
    """A release whose pods crash at start; the commit.

    The emulator runs no code, so the crash is asked for: its fake kubelet reads
    the pod annotation ``sandbox.gitops-steps.dev/behavior: crash`` and reports
    the container exiting 1 on each start, as a real kubelet would (CrashLoopBackOff).
    """
    where = "k8s/base" if sandbox.chain_of(pipeline.values) else "k8s"
    template = pipeline.app_file(f"{where}/deployment.yaml.tpl")
    crashing = template.replace(
        "      labels:\n        app: hello\n    spec:",
        f"      labels:\n        app: hello\n      annotations:\n        {CRASH}: crash\n    spec:",
    )
    if crashing == template:
        raise InternalError(f"{where}/deployment.yaml.tpl: no pod template labels to edit")
    return pipeline.app_commit(
        {f"{where}/deployment.yaml.tpl": crashing}, "Release 2: its pods crash at start"
    )


class Story:
    """The demo's chapters, each an app build or an env build, checked as it goes."""

    def __init__(self, pipeline: Pipeline, timeout: float) -> None:
        self.pipeline = pipeline
        self.timeout = timeout
        self.env_builds = 0

    def release(self, commit: str, title: str) -> dict[str, Any]:
        """App build for ``commit``, then the env build its push triggered; that record."""
        say(f"{title}: app build for {commit[:12]} (the app repo's cloudbuild.yaml)")
        build, lines = self.pipeline.app_build(commit)
        if build.status != "SUCCESS":
            for line in lines[-40:]:
                print(line, file=sys.stderr)
            raise CheckFailed(f"{title}: app build {build.build_id}: {build.status}")
        say(f"{title}: pushed to candidate; the trigger runs the env repo's cloudbuild.yaml")
        return self.wait(title)

    def rerun(self, commit: str, title: str) -> dict[str, Any]:
        say(f"{title}: gcloud builds triggers run env-candidate --sha={commit[:12]} (here: re-run)")
        self.pipeline.rerun_env_build(commit)
        return self.wait(title)

    def wait(self, title: str) -> dict[str, Any]:
        self.env_builds += 1
        try:
            record = self.pipeline.wait_env_builds(self.env_builds, self.timeout)[-1]
        except TimeoutError as exc:
            raise CheckFailed(f"{title}: {exc}") from None
        say(f"{title}: env build {record.get('build_id')}: {record['status']}")
        return record

    def outline(self, record: Mapping[str, Any], pattern: str) -> list[str]:
        """The env build's log lines that tell what happened (matching ``pattern``)."""
        text = Path(str(record["log"])).read_text(errors="replace")
        return [line for line in text.splitlines() if re.search(pattern, line)]


def tell(story: Story) -> None:
    """Healthy release, crashing release rolled back, rollback by re-run; or CheckFailed."""
    pipeline = story.pipeline
    first = pipeline.values["APP_FIRST_COMMIT"]
    one = story.release(first, "release 1")
    _expect(one["status"] == "SUCCESS", "release 1 did not reach production", one)
    image_one = pipeline.cluster()["image"]
    say(f"release 1 is live: {image_one}")

    two = story.release(crashing_release(pipeline), "release 2")
    _expect(two["status"] == "FAILURE", "release 2 crashes, yet its env build passed", two)
    for line in story.outline(two, r"rollout failed|ERROR |rolling back|rollback complete")[:6]:
        print(f"  {line.strip()}", file=sys.stderr)
    _expect(pipeline.cluster()["image"] == image_one, "release 2 was not rolled back", two)
    say("release 2 failed fast and was rolled back: the cluster runs release 1 again")

    fixed = {"k8s/deployment.yaml.tpl": pipeline.app_file("k8s/deployment.yaml.tpl", first)}
    three = story.release(greeting_release(pipeline, "release3", fixed), "release 3")
    _expect(three["status"] == "SUCCESS", "release 3 did not reach production", three)

    back = story.rerun(str(one["commit"]), "rollback to release 1")
    _expect(back["status"] == "SUCCESS", "re-running release 1's env build failed", back)
    subject = pipeline.log("production", "%s")[0]
    _expect(subject.startswith("Rollback to "), f"production says {subject!r}", back)
    _expect(pipeline.cluster()["image"] == image_one, "the cluster does not run release 1", back)
    say(f"production records it: {subject}")


def _expect(holds: bool, problem: str, record: Mapping[str, Any]) -> None:
    if not holds:
        log = (
            Path(str(record.get("log") or "")).read_text(errors="replace")
            if record.get("log")
            else ""
        )
        sys.stderr.write(log[-4000:])
        raise CheckFailed(f"the story went wrong: {problem}")


def write_page(pipeline: Pipeline, page: Path) -> None:
    """The history page, as env.yaml's history step makes it; kept after the demo."""
    from steps.history import main as history

    argv = ["--repo", pipeline.values["ENV_REPO_DIR"], "--path", sandbox.ENV_PATH]
    argv += ["--format", "html", "--output", str(page)]
    if history(argv) != 0:
        raise InternalError(f"gitops-history could not write {page}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gitops-cloudbuild demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dir", help="run the sandbox here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="leave the sandbox running")
    parser.add_argument(
        "--timeout", type=float, default=APP_TIMEOUT, help="seconds to wait for each env build"
    )
    parser.add_argument(
        "--page",
        type=Path,
        default=PAGE,
        help="where the history page goes (default out/demo/history.html in this checkout)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    page = args.page.resolve()

    def body() -> int:
        sandbox.provide_python_base()
        with running_sandbox(Path(args.dir) if args.dir else None, keep=args.keep) as pipeline:
            tell(Story(pipeline, args.timeout))
            _print_history(pipeline)
            cluster = pipeline.cluster()
            print(f"\n== cluster: Deployment/hello runs {cluster['image']}", flush=True)
            write_page(pipeline, page)
        # After the sandbox stopped: the page's path is the last line a user reads.
        say(f"done in {time.monotonic() - started:.1f}s")
        print(f"\nhistory page: {page}", flush=True)
        return 0

    return sandbox.run_command_body("gitops-cloudbuild demo", body)


if __name__ == "__main__":
    sys.exit(main())
