"""``gitops-sandbox up``: the whole pipeline's outside world, on loopback, in the background.

Starts four detached processes, each with a pid file under ``DIR/run`` and a
log under ``DIR/logs``:

- ``registry``: Debian's docker-registry (storage in ``DIR/registry``);
- ``git``: a Git server over HTTP (basic auth, user ``x-access-token``, the
  token in ``DIR/secrets.env``) holding ``app.git`` (``examples/app`` as its
  first commit on ``main``, with ``cloudbuild/app.yaml`` as its
  ``cloudbuild.yaml``) and ``env.git`` (``cloudbuild/env.yaml`` as its
  ``cloudbuild.yaml`` on ``main`` and ``production``);
- ``kube``: the Kubernetes emulator, asking that registry whether images exist;
- ``gcp``: a GCE metadata server and a GKE API stand-in serving the emulator as
  cluster ``projects/sandbox-project/locations/europe-west1/clusters/sandbox``.

A push to ``env.git``'s ``candidate`` branch runs the env build, as a Cloud
Build trigger would (``steps.sandbox.triggers``). Everything other commands
need is in ``DIR/sandbox.env`` (``set -a; . DIR/sandbox.env; set +a``); the
token also sits alone in ``DIR/secrets.env``, the builds' ``--secret-env-file``.
``gitops-sandbox down --dir DIR`` stops it all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.lib.errors import ExternalError, InternalError, StepError, UsageError
from steps.lib.kustomize import KUSTOMIZE_IMAGE
from steps.sandbox.gcp import DEFAULT_CLUSTER
from steps.sandbox.registry import free_port

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
EXAMPLE_APP = REPO / "examples" / "app"
APP_CONFIG = REPO / "cloudbuild" / "app.yaml"
ENV_CONFIG = REPO / "cloudbuild" / "env.yaml"
PROJECT_ID = "sandbox-project"
CLUSTER = DEFAULT_CLUSTER
GIT_USER = "x-access-token"
ENV_PATH = "hello"
CHAIN = ("staging", "production")
"""``up --chain``: the environments after ``candidate``, each its own namespace."""
MANIFESTS = ("deployment.yaml.tpl", "service.yaml")
"""The example app's manifests under k8s/ (under k8s/base/ in a chain)."""
OVERLAYS = {
    # The example app's manifests move to k8s/base; each environment an overlay on it.
    "k8s/base/kustomization.yaml": "resources: [deployment.yaml, service.yaml]\n",
    "k8s/overlays/staging/kustomization.yaml": "resources: [../../base]\nnamespace: staging\n",
    "k8s/overlays/production/kustomization.yaml": (
        "resources: [../../base]\nnamespace: production\nlabels:\n- pairs: {tier: production}\n"
    ),
}
IDENTITY = {
    "GIT_AUTHOR_NAME": "Sandbox Developer",
    "GIT_AUTHOR_EMAIL": "developer@sandbox.invalid",
    "GIT_COMMITTER_NAME": "Sandbox Developer",
    "GIT_COMMITTER_EMAIL": "developer@sandbox.invalid",
}
SERVICES = ("registry", "git", "kube", "gcp")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_SKIP = ("__pycache__", ".pytest_cache", "test-results", "out", ".venv")


def say(message: str) -> None:
    print(f"gitops-sandbox: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Layout:
    """Where a sandbox keeps everything, under one directory."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def git_root(self) -> Path:
        return self.root / "git"

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.root / "sandbox.env"

    @property
    def registries_conf(self) -> Path:
        return self.root / "registries.conf"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.env"

    @property
    def builds(self) -> Path:
        return self.root / "builds"

    @property
    def triggers(self) -> Path:
        return self.root / "triggers"

    def pid_file(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


# -- sandbox.env -------------------------------------------------------------------


def render_env(values: Mapping[str, str]) -> str:
    """``export K='V'`` lines a shell can source (pure)."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items())


def parse_env(text: str) -> dict[str, str]:
    """Read what ``render_env`` (or a plain ``K=V`` file) wrote (pure)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if not sep:
            continue
        words = shlex.split(value) if value else [""]
        values[name.strip()] = words[0] if words else ""
    return values


def read_env(root: Path) -> dict[str, str]:
    """The running sandbox's ``sandbox.env`` as a dict."""
    layout = Layout(Path(root))
    if not layout.env_file.exists():
        raise UsageError(f"{layout.env_file}: no sandbox here (run gitops-sandbox up --dir {root})")
    return parse_env(layout.env_file.read_text())


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


def chain_of(values: Mapping[str, str]) -> list[str]:
    """The environments of a chained sandbox, in order; [] for one environment."""
    return values.get("CHAIN", "").split()


def substitutions(
    values: Mapping[str, str], which: str, environment: str | None = None
) -> dict[str, str]:
    """The trigger substitutions of the sandbox's app build or an environment's env build
    (pure). In a chain, every environment has its own namespace, lock and live record
    on the one emulator, and the later ones promote from the one before."""
    common = {"_ENV_REPO": values["ENV_REPO"], "_ENV_PATH": ENV_PATH}
    chain = chain_of(values)
    if which == "app":
        app = {**common, "_IMAGE_REPO": f"{values['REGISTRY']}/{PROJECT_ID}/apps"}
        if chain:
            app["_OVERLAYS"] = " ".join(f"{env}=overlays/{env}" for env in chain)
            app["_UPDATE_MANIFEST_IMAGE"] = KUSTOMIZE_IMAGE
        return app
    location, cluster = values["GITOPS_CLUSTER"].split("/")[3::2]
    env = {**common, "_CLUSTER": cluster, "_CLUSTER_LOCATION": location, "_TIMEOUT": "2m"}
    if chain:
        name = environment or chain[0]
        index = chain.index(name)
        env.update(
            _ENVIRONMENT=name,
            _NAMESPACE=name,
            _MANIFESTS_SUBDIR=name,
            _TO_BRANCH=name,
            _FROM_BRANCH=chain[index - 1] if index else "candidate",
            _CHAIN=" ".join(chain),
        )
        if index:
            env["_REQUIRE_PROMOTED"] = "true"  # no soak here: the sandbox tells it in minutes
    return env


# -- processes -----------------------------------------------------------------------


def _python() -> str:
    return sys.executable


KEEP = ("GITOPS_CACHE_DIR",)
"""Not a stage's flag but where the image storage is: every child must agree on it."""


def _child_env() -> dict[str, str]:
    """Our environment minus anything a developer's Git or a build could leak in."""
    drop = ("GIT_", "GITOPS_", "BUILDER_", "GCE_METADATA_")
    return {k: v for k, v in os.environ.items() if k in KEEP or not k.startswith(drop)}


def spawn(layout: Layout, name: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Start ``argv`` detached (own session), logging to ``DIR/logs/NAME.log``; its pid."""
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    with layout.log(name).open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=layout.root,
            env=dict(env),
        )
    layout.pid_file(name).write_text(f"{process.pid}\n")
    return process.pid


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _owned(pid: int, root: Path) -> bool:
    """Whether ``pid`` is still one of this sandbox's processes (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return str(root) in cmdline


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_ready(layout: Layout, name: str, pid: int, port: int, extra: Path | None = None) -> None:
    """Bounded wait until ``port`` accepts connections (and ``extra`` exists)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if not alive(pid):
            tail = layout.log(name).read_text(errors="replace")[-1500:].strip()
            raise ExternalError(f"{name} exited while starting: {tail}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            if extra is None or extra.exists():
                return
        time.sleep(0.05)
    raise ExternalError(f"{name} did not answer on {HOST}:{port} within {START_TIMEOUT:.0f}s")


def stop_pid(pid: int, root: Path, timeout: float = STOP_TIMEOUT) -> bool:
    """TERM the process group of ``pid`` (one of ours), then KILL; whether it was running."""
    if not alive(pid) or not _owned(pid, root):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    return True


# -- the app config and its base image -------------------------------------------------

PYTHON_BASE = "docker.io/library/python:3.12-slim"
LOCAL_BASE = "localhost/gitops-steps-base:bookworm"


def provide_python_base(timeout: float = 900.0) -> str:
    """Make ``FROM python:3.12-slim`` build here: tag the local Debian base (made by
    ``scripts/build-images --base-only`` if missing) with that name, in the image
    storage gitops-cloudbuild's docker builder uses. Returns the base's name."""
    if shutil.which("buildah") is None:
        raise UsageError("building the app image needs buildah (run scripts/setup as root)")
    env = containers_env()

    def present(image: str) -> bool:
        argv = ["buildah", "inspect", "--type", "image", image]
        done = subprocess.run(argv, env=env, capture_output=True, check=False, timeout=60)
        return done.returncode == 0

    if present(PYTHON_BASE):
        return PYTHON_BASE
    if not present(LOCAL_BASE):
        say(f"making {LOCAL_BASE} (scripts/build-images --base-only; about a minute, once)")
        script = str(REPO / "scripts" / "build-images")
        done = subprocess.run([script, "--base-only"], env=env, check=False, timeout=timeout)
        if done.returncode != 0:
            raise build_images_error(done.returncode)
    say(f"{PYTHON_BASE} is {LOCAL_BASE} here (no image can be pulled)")
    argv = ["buildah", "tag", LOCAL_BASE, PYTHON_BASE]
    tagged = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=60)
    if tagged.returncode != 0:
        raise ExternalError(f"buildah tag {LOCAL_BASE} {PYTHON_BASE}: {tagged.stderr.strip()}")
    return PYTHON_BASE


def containers_env() -> dict[str, str]:
    """The environment for buildah and scripts/build-images: ours (HOME, PATH, proxies,
    the cache location...) minus what a developer's Git could leak in, plus the one
    image storage every entry point shares."""
    from steps.lib import containers

    env = _child_env()
    return {**env, **containers.environ(env)}


def build_images_error(code: int) -> StepError:
    """scripts/build-images' exit code as ours: only 3 (the Debian mirror) is outside."""
    message = f"scripts/build-images --base-only exited {code}"
    if code == 3:
        return ExternalError(message + " (the Debian mirror; see the lines above)")
    if code == 2:
        return UsageError(message + " (see the lines above)")
    return InternalError(message + ": a bug in gitops-steps; please report it")


# -- repositories ----------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **_child_env(),
        **IDENTITY,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        raise ExternalError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _copy_app(target: Path) -> None:
    shutil.copytree(EXAMPLE_APP, target, ignore=shutil.ignore_patterns(*_SKIP, "*.pyc"))


def install_hook(layout: Layout, *, engine: str = "process") -> Path:
    """Write ``env.git``'s post-receive hook: ``steps.sandbox.triggers hook`` takes the pushes."""
    hook = layout.git_root / "env.git" / "hooks" / "post-receive"
    hook.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "steps.sandbox.triggers", "hook", "--dir", str(layout.root)]
    argv += ["--engine", engine]
    home = os.environ.get("HOME") or str(Path.home())
    hook.write_text(
        "#!/bin/sh\n"
        "# gitops-sandbox: a push to candidate starts the env build, as a Cloud Build\n"
        "# trigger would; the build runs detached, so the push does not wait for it.\n"
        f"export HOME={shlex.quote(home)}\n"
        f"exec {shlex.join(argv)}\n"
    )
    hook.chmod(0o755)
    return hook


def seed_repositories(layout: Layout, chain: Sequence[str] = ()) -> dict[str, str]:
    """Create ``app.git`` and ``env.git`` with their first commits; their shas.

    With a ``chain``, the app's manifests get Kustomize overlays, one per
    environment, and env.git a branch per environment holding the env build's
    config (a trigger builds the commit pushed, config included).
    """
    layout.git_root.mkdir(parents=True, exist_ok=True)
    shas: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="gitops-sandbox-seed-") as tmp:
        for name in ("app", "env"):
            bare = layout.git_root / f"{name}.git"
            if (bare / "HEAD").exists():
                shas[name] = git("--git-dir", str(bare), "rev-parse", "main").strip()
                continue
            git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
            work = Path(tmp) / name
            if name == "app":
                _copy_app(work)
                if chain:
                    (work / "k8s" / "base").mkdir()
                    for manifest in MANIFESTS:
                        (work / "k8s" / manifest).rename(work / "k8s" / "base" / manifest)
                for name_, text in (OVERLAYS if chain else {}).items():
                    (work / name_).parent.mkdir(parents=True, exist_ok=True)
                    (work / name_).write_text(text)
                (work / "cloudbuild.yaml").write_text(APP_CONFIG.read_text())
                message = "Example app: hello, with its Cloud Build pipeline"
            else:
                work.mkdir()
                shutil.copyfile(ENV_CONFIG, work / "cloudbuild.yaml")
                (work / "README.md").write_text(
                    "# env\n\nManifests per app; `candidate` holds every attempt, "
                    "`production` what ran.\n"
                )
                message = "Env repo: the env build's Cloud Build config"
            git("init", "--quiet", "--initial-branch=main", str(work))
            git("add", "--all", cwd=work)
            git("commit", "--quiet", "-m", message, cwd=work)
            branches = ["main"] if name == "app" else ["main", *(chain or ["production"])]
            refspecs = [f"HEAD:refs/heads/{branch}" for branch in branches]
            git("push", "--quiet", str(bare), *refspecs, cwd=work)
            shas[name] = git("rev-parse", "HEAD", cwd=work).strip()
    return shas


# -- what a user's own commands need ------------------------------------------------------

SYSTEM_REGISTRIES_CONF = Path("/etc/containers/registries.conf")


def registries_conf(system: str, registry: str) -> str:
    """The system's registries.conf with the sandbox registry marked plain HTTP (pure)."""
    return (
        system.rstrip("\n")
        + f"\n\n# gitops-sandbox: its registry speaks plain HTTP on loopback.\n[[registry]]\n"
        f'location = "{registry}"\ninsecure = true\n'
    ).lstrip("\n")


def playground_environ(layout: Layout, registry: str) -> dict[str, str]:
    """What lets a user's own commands reach the sandbox with no extra flags: our stages
    (``GITOPS_INSECURE_REGISTRY``), buildah and podman (the registry as plain HTTP, and
    the image storage the sandbox's builds use)."""
    try:
        system = SYSTEM_REGISTRIES_CONF.read_text()
    except OSError:
        system = ""
    layout.registries_conf.write_text(registries_conf(system, registry))
    from steps.lib import containers

    return {
        "GITOPS_INSECURE_REGISTRY": registry,
        "CONTAINERS_REGISTRIES_CONF": str(layout.registries_conf),
        **containers.environ(_child_env()),
    }


# -- up and down ---------------------------------------------------------------------------


def create_namespace(kubeconfig: Path, name: str) -> None:
    """An environment's namespace, as a cluster admin would make it before the first build."""
    from steps.lib.kube_access import Access, connect

    api = connect(Access(kubeconfig=str(kubeconfig)))
    resource = api.resource("v1", "Namespace")
    if resource is None:
        raise InternalError("the emulator serves no v1 Namespace")
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    api.apply(resource, obj, field_manager="gitops-sandbox")


@dataclass(frozen=True)
class Options:
    root: Path
    ports: Mapping[str, int]
    fast: bool = False
    trigger: bool = True
    engine: str = "process"
    chain: bool = False


def up(options: Options) -> dict[str, str]:
    """Start the sandbox (or check the one already running there); the sandbox.env values."""
    layout = Layout(options.root.resolve())
    layout.root.mkdir(parents=True, exist_ok=True)
    running = [n for n in SERVICES if (pid := read_pid(layout.pid_file(n))) and alive(pid)]
    if running and layout.env_file.exists():
        if len(running) == len(SERVICES):
            say(f"already running in {layout.root}")
            return read_env(layout.root)
        raise UsageError(
            f"{layout.root}: only {', '.join(running)} running; run gitops-sandbox down first"
        )
    token = "gst_" + secrets.token_urlsafe(24)
    # Plain KEY=VALUE lines: gitops-cloudbuild's --secret-env-file format.
    _write_private(layout.secrets, f"GIT_TOKEN={token}\n")
    ports = {name: options.ports.get(name) or free_port() for name in SERVICES}
    env = _child_env()
    py = _python()
    values: dict[str, str] = {"SANDBOX_DIR": str(layout.root), "PROJECT_ID": PROJECT_ID}
    try:
        chain = list(CHAIN) if options.chain else []
        values["CHAIN"] = " ".join(chain)
        shas = seed_repositories(layout, chain)
        if options.trigger:
            install_hook(layout, engine=options.engine)
        say(f"registry on {HOST}:{ports['registry']}")
        argv = [py, "-m", "steps.sandbox", "registry", "--port", str(ports["registry"])]
        pid = spawn(layout, "registry", [*argv, "--dir", str(layout.registry)], env)
        wait_ready(layout, "registry", pid, ports["registry"])
        registry = f"{HOST}:{ports['registry']}"

        say(f"git server on {HOST}:{ports['git']}: app.git, env.git")
        argv = [py, "-m", "steps.sandbox.triggers", "serve-git", "--dir", str(layout.root)]
        pid = spawn(layout, "git", [*argv, "--port", str(ports["git"])], env)
        wait_ready(layout, "git", pid, ports["git"])
        git_url = f"http://{HOST}:{ports['git']}"

        say(f"kube emulator on {HOST}:{ports['kube']}")
        layout.kubeconfig.unlink(missing_ok=True)
        argv = [py, "-m", "steps.sandbox", "kube", "--port", str(ports["kube"])]
        argv += ["--kubeconfig", str(layout.kubeconfig), "--registry", registry]
        pid = spawn(layout, "kube", [*argv, *(["--fast"] if options.fast else [])], env)
        wait_ready(layout, "kube", pid, ports["kube"], layout.kubeconfig)
        for namespace in chain:
            create_namespace(layout.kubeconfig, namespace)

        say(f"metadata server and GKE API on {HOST}:{ports['gcp']}")
        argv = [py, "-m", "steps.sandbox", "gcp", "--port", str(ports["gcp"])]
        argv += ["--project", PROJECT_ID, "--kubeconfig", str(layout.kubeconfig)]
        pid = spawn(layout, "gcp", [*argv, "--cluster", CLUSTER], env)
        wait_ready(layout, "gcp", pid, ports["gcp"])
    except BaseException:
        down(layout.root, quiet=True)
        raise
    gcp = f"{HOST}:{ports['gcp']}"
    values.update(
        GIT_URL=git_url,
        APP_REPO=f"{git_url}/app.git",
        ENV_REPO=f"{git_url}/env.git",
        APP_REPO_DIR=str(layout.git_root / "app.git"),
        ENV_REPO_DIR=str(layout.git_root / "env.git"),
        APP_FIRST_COMMIT=shas["app"],
        GIT_USERNAME=GIT_USER,
        GIT_TOKEN=token,
        SECRET_ENV_FILE=str(layout.secrets),
        REGISTRY=registry,
        KUBECONFIG=str(layout.kubeconfig),
        KUBE_URL=f"http://{HOST}:{ports['kube']}",
        GCE_METADATA_HOST=gcp,
        GCE_METADATA_IP=gcp,
        GITOPS_CONTAINER_API_URL=f"http://{gcp}",
        GITOPS_CLUSTER=CLUSTER,
        TRIGGERS_DIR=str(layout.triggers),
        ENGINE=options.engine,
    )
    values.update(playground_environ(layout, registry))
    _write_private(layout.env_file, render_env(values))
    say(f"ready: set -a; . {layout.env_file}; set +a")
    return values


# -- the image cache -----------------------------------------------------------------------

STALE_IMAGE_AGE = 3600.0
"""An app image of another sandbox older than this is a leftover (builds take seconds)."""


def stale_app_images(
    images: Sequence[Mapping[str, Any]], registry: str | None, now: float
) -> list[str]:
    """Names of app images built for a sandbox registry (``127.0.0.1:PORT/sandbox-project/``)
    that nothing needs any more: this sandbox's (``registry``), or any older than
    ``STALE_IMAGE_AGE`` (another sandbox's, which may still be building, is left alone).
    ``images`` as ``buildah images --json`` lists them (pure)."""
    names: list[str] = []
    for image in images:
        created = image.get("created")
        old = isinstance(created, int | float) and now - created > STALE_IMAGE_AGE
        for name in image.get("names") or ():
            host, _, rest = str(name).partition("/")
            if not host.startswith(f"{HOST}:") or not rest.startswith(f"{PROJECT_ID}/"):
                continue
            if host == registry or old:
                names.append(str(name))
    return names


def prune_app_images(registry: str | None) -> list[str]:
    """Untag (and so free) the app images ``stale_app_images`` picks; their names.

    Every app build leaves an image behind (its label names the commit, so no
    two are alike): without this the image cache grows by one image per build."""
    from steps.lib import containers

    if shutil.which("buildah") is None or not (containers.cache_dir() / "storage.conf").exists():
        return []
    env = containers_env()
    try:
        listed = subprocess.run(
            ["buildah", "images", "--json"], env=env, capture_output=True, text=True,
            check=False, timeout=60,
        )  # fmt: skip
        images = json.loads(listed.stdout or "[]") if listed.returncode == 0 else []
        names = stale_app_images(images if isinstance(images, list) else [], registry, time.time())
        if names:
            argv = ["buildah", "rmi", *names]
            subprocess.run(argv, env=env, capture_output=True, check=False, timeout=300)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return names


def down(root: Path, *, quiet: bool = False) -> list[str]:
    """Stop every process of the sandbox in ``root`` (builds first), and prune the app
    images built for it; what was running."""
    layout = Layout(Path(root).resolve())
    stopped: list[str] = []
    pid_files = sorted(layout.run.glob("build-*.pid")) if layout.run.is_dir() else []
    pid_files += [layout.pid_file(name) for name in reversed(SERVICES)]
    for pid_file in pid_files:
        pid = read_pid(pid_file)
        if pid is not None and stop_pid(pid, layout.root):
            stopped.append(pid_file.stem)
        pid_file.unlink(missing_ok=True)
    registry = None
    with contextlib.suppress(OSError, StepError):
        registry = read_env(layout.root).get("REGISTRY")
    pruned = prune_app_images(registry)
    if pruned and not quiet:
        say(f"pruned {len(pruned)} app image(s) from the image cache")
    if not quiet:
        say(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {layout.root}")
    return stopped


# -- commands ------------------------------------------------------------------------------


def run_command_body(prog: str, body: Callable[[], int]) -> int:
    """``body()``, with our errors as one line and their exit code, and anything else
    as a bug (traceback, exit 70): never reported as an outside system's failure."""
    try:
        return body()
    except StepError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except Exception:
        traceback.print_exc()
        print(f"{prog}: internal error: a bug in gitops-steps; please report it", file=sys.stderr)
        return InternalError.exit_code


# -- gitops-sandbox up ---------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitops-sandbox up",
        description="Start the registry, Git server, Kubernetes emulator and metadata server "
        "on 127.0.0.1, in the background; write DIR/sandbox.env.",
    )
    parser.add_argument("--dir", required=True, help="where pid files, logs and state go")
    for name in SERVICES:
        parser.add_argument(
            f"--{name}-port", type=int, default=0, help=f"{name} port (0: any free port)"
        )
    parser.add_argument(
        "--fast", action="store_true", help="the emulator's test timings (rollouts in ms)"
    )
    parser.add_argument(
        "--no-trigger", action="store_true", help="pushes to candidate start no env build"
    )
    parser.add_argument(
        "--chain",
        action="store_true",
        help="two environments, staging then production (namespaces on one emulator)",
    )
    parser.add_argument(
        "--engine",
        default="process",
        choices=("process", "podman"),
        help="gitops-cloudbuild engine for triggered builds (default process)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ports = {name: getattr(args, f"{name}_port") for name in SERVICES}
    options = Options(
        Path(args.dir),
        ports,
        fast=args.fast,
        trigger=not args.no_trigger,
        engine=args.engine,
        chain=args.chain,
    )

    def body() -> int:
        up(options)
        return 0

    return run_command_body("gitops-sandbox up", body)


if __name__ == "__main__":
    sys.exit(main())
