"""Running a build's steps: each as a process (or a container) with the build's
workspace, environment and masking, and the ``waitFor`` graph on threads."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.cloudbuild import engine as engines
from steps.cloudbuild import stepgraph
from steps.cloudbuild.records import Log, Masker, StepRecord

OUTPUT_LIMIT = 4096
LOG_TAIL = 200
KILL_GRACE = 3.0


# -- one step ------------------------------------------------------------------


@dataclass(repr=False)
class Context:
    """What every step of one build shares (its repr names no secret or environment)."""

    engine: str
    workspace: Path
    home: Path
    scratch: Path
    volumes: dict[str, Path]
    values: dict[str, str]
    options: dict[str, Any]
    secrets: dict[str, str]
    base_env: dict[str, str]
    extra_env: dict[str, str]
    maps: list[engines.Mapping_]
    mask: Masker
    log: Log
    cancel: threading.Event
    log_lock: threading.Lock = field(default_factory=threading.Lock)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _images: dict[str, bool] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Context({self.engine} in {self.workspace})"

    def image_available(self, image: str, engine: str) -> bool:
        """Whether ``engine`` has ``image`` or can pull it (cached)."""
        if image not in self._images:
            base = [shutil.which(engine) or engine]
            if engine == "podman":
                base += list(engines.PODMAN_FLAGS)
            env = {**os.environ, **engines.containers_environ()} if engine == "podman" else None
            found = False
            for verb in (["image", "inspect"], ["pull", "--quiet"]):
                try:
                    proc = subprocess.run(
                        [*base, *verb, image],
                        env=env,
                        capture_output=True,
                        check=False,
                        timeout=120,
                    )
                except (OSError, subprocess.TimeoutExpired):
                    break
                if proc.returncode == 0:
                    found = True
                    break
            self._images[image] = found
        return self._images[image]

    def rewrite(self, text: str, step: stepgraph.Step) -> str:
        """Container paths (/workspace, /builder/home, volumes) as local ones."""
        places = {"/workspace": self.workspace, "/builder/home": self.home}
        for volume in [*self._option_volumes(), *step.volumes]:
            places[volume.path] = self.volumes[volume.name]
        for inside in sorted(places, key=len, reverse=True):
            pattern = r"(?<![\w./-])" + re.escape(inside.rstrip("/")) + r"(?=/|$|[^\w.-])"
            local = str(places[inside]).replace("\\", "\\\\")
            text = re.sub(pattern, local, text)
        return text

    def _option_volumes(self) -> list[stepgraph.Volume]:
        return [stepgraph.Volume(v["name"], v["path"]) for v in self.options.get("volumes") or []]

    def step_env(self, step: stepgraph.Step, outputs: Path, local: bool) -> dict[str, str]:
        env: dict[str, str] = dict(self.extra_env)  # --env: every step, whatever the engine
        automap = step.automap
        if automap is None:
            automap = bool(self.options.get("automapSubstitutions"))
        if automap:
            env.update(self.values)
        for entry in [*(self.options.get("env") or []), *step.env]:
            key, _, value = str(entry).partition("=")
            env[key] = self.rewrite(value, step) if local else value
        for name in [*(self.options.get("secretEnv") or []), *step.secret_env]:
            env[name] = self.secrets[name]
        env["HOME"] = str(self.home) if local else "/builder/home"
        env["BUILDER_OUTPUT"] = str(outputs) if local else "/builder/outputs"
        return env


def run_step_in(ctx: Context, step: stepgraph.Step, record: StepRecord) -> None:
    """Run one step to the end; fill ``record``. Never raises for step failures."""
    outputs = ctx.scratch / "outputs" / str(step.index)
    outputs.mkdir(parents=True, exist_ok=True)
    image = step.name
    prefix = ctx.values.get("_STEPS_IMAGE_PREFIX")
    local = engines.placement(image, ctx.engine, ctx.maps, prefix) == engines.HOST
    engine = engines.container_engine_for(ctx.engine)
    try:
        if not local:
            target = engines.container_image(image, ctx.maps)
            if engine is None:
                raise engines.NotRunnable(engines.unmapped_message(image))
            if not ctx.image_available(target, engine):
                # Never a silent fallback to the host: the build says what it ran.
                raise engines.NotRunnable(
                    f"image {target} is not available to {engine} (not in its storage and "
                    "it cannot be pulled); build it (scripts/build-images) or pull it, "
                    "or map it with --map-image"
                )
        argv, env, cwd = _command(ctx, step, image, outputs, local, engine or ctx.engine)
        record.ran_in = "host" if local else f"{engine} {target}"
    except engines.NotRunnable as exc:
        _emit(ctx, step, f"ERROR: {exc}", record)
        record.status, record.exit_code, record.error = "FAILURE", 127, str(exc)
        return
    record.started = time.time()
    deadline = None if step.timeout is None else time.monotonic() + step.timeout
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        message = f"cannot start {argv[0]}: {exc.strerror}"
        _emit(ctx, step, f"ERROR: {message}", record)
        record.status, record.exit_code, record.error = "FAILURE", 127, message
        record.finished = time.time()
        return
    ctx.processes[step.key] = proc
    reader = threading.Thread(target=_pump, args=(ctx, step, proc, record), daemon=True)
    reader.start()
    status = _wait(ctx, proc, deadline)
    # As when a step's container stops: what it left running goes with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=5)
    ctx.processes.pop(step.key, None)
    record.finished = time.time()
    record.exit_code = proc.returncode
    output = outputs / "output"
    if output.is_file():
        record.output = ctx.mask(output.read_bytes()[:OUTPUT_LIMIT].decode("utf-8", "replace"))
    if status == "TIMEOUT":
        record.status = "TIMEOUT"
        record.error = f"step timed out after {step.timeout:g}s"
        _emit(ctx, step, f"ERROR: {record.error}", record)
    elif status == "CANCELLED":
        record.status = "CANCELLED"
    elif proc.returncode == 0:
        record.status = "SUCCESS"
    else:
        record.status = "FAILURE"
        allowed = (
            proc.returncode in step.allow_exit_codes
            if step.allow_exit_codes
            else step.allow_failure
        )
        record.allowed_failure = allowed
        record.error = f"exit status {proc.returncode}"


def _wait(ctx: Context, proc: subprocess.Popen[bytes], deadline: float | None) -> str | None:
    """Wait for the step's process; "TIMEOUT" or "CANCELLED" when it had to be stopped."""
    status = None
    while True:
        try:
            proc.wait(timeout=0.05)
            return status
        except subprocess.TimeoutExpired:
            pass
        if deadline is not None and time.monotonic() > deadline:
            status = "TIMEOUT"
            terminate(proc)
        elif ctx.cancel.is_set():
            status = "CANCELLED"
            terminate(proc)


def _command(
    ctx: Context, step: stepgraph.Step, image: str, outputs: Path, local: bool, engine: str
) -> tuple[list[str], dict[str, str], Path]:
    env = ctx.step_env(step, outputs, local)
    prefix = ctx.values.get("_STEPS_IMAGE_PREFIX")
    script_file: Path | None = None
    if step.script is not None:
        script_file = ctx.scratch / "scripts" / f"{step.index}.sh"
        script_file.parent.mkdir(parents=True, exist_ok=True)
        text = ctx.rewrite(step.script, step) if local else step.script
        script_file.write_text(text, encoding="utf-8")
        script_file.chmod(0o755)
    if local:
        args = [ctx.rewrite(a, step) for a in step.args]
        if script_file is not None:
            first = step.script.splitlines()[0] if step.script else ""
            argv = [str(script_file)] if first.startswith("#!") else ["sh", str(script_file)]
        else:
            argv = engines.local_command(step, image, args, steps_prefix=prefix, maps=ctx.maps)
        full_env = {**ctx.base_env, **env}
        workdir = ctx.workspace
        if step.dir:
            target = ctx.rewrite(step.dir, step)
            workdir = Path(target) if Path(target).is_absolute() else ctx.workspace / target
        workdir.mkdir(parents=True, exist_ok=True)
        if Path(argv[0]).name == "buildah":
            full_env.update(engines.containers_environ(full_env))
            if argv[1:2] == ["bud"]:
                _require_base_images(args, workdir, full_env)
        return argv, full_env, workdir
    mounts = [(str(ctx.workspace), "/workspace"), (str(ctx.home), "/builder/home")]
    mounts.append((str(outputs), "/builder/outputs"))
    for volume in [*ctx._option_volumes(), *step.volumes]:
        mounts.append((str(ctx.volumes[volume.name]), volume.path))
    inside_script = None
    if script_file is not None:
        mounts.append((str(script_file.parent), "/builder/scripts"))
        inside_script = f"/builder/scripts/{script_file.name}"
    inside_dir = "/workspace"
    if step.dir:
        inside_dir = step.dir if step.dir.startswith("/") else f"/workspace/{step.dir}"
    metadata = {k: v for k, v in ctx.base_env.items() if k.startswith("GCE_METADATA")}
    container_env = {**env, **metadata}
    argv = engines.container_command(
        engine,
        step,
        engines.container_image(image, ctx.maps),
        step.args,
        env=container_env,
        mounts=mounts,
        workdir=inside_dir,
        script_path=inside_script,
        shebang=bool(step.script and step.script.startswith("#!")),
        name=f"gitops-cloudbuild-{uuid.uuid4().hex[:12]}",
    )
    host_env = {**os.environ, **container_env}
    if engine == "podman":
        host_env.update(engines.containers_environ(host_env))
    return argv, host_env, ctx.workspace


def _require_base_images(args: Sequence[str], workdir: Path, env: Mapping[str, str]) -> None:
    """``docker build`` here: every base image must already be in local storage,
    checked before buildah starts (it would look the name up on the network)."""
    buildah = shutil.which("buildah") or "buildah"
    for base in engines.dockerfile_bases(args, workdir):
        proc = subprocess.run(
            [buildah, "inspect", "--type", "image", base],
            env=dict(env),
            capture_output=True,
            check=False,
        )
        if proc.returncode != 0:
            raise engines.NotRunnable(
                f"docker build: base image {base} is not in local storage; stopping before "
                "any network access (no registry is pulled from here). Build or pull it "
                f"first, or map {engines.DOCKER} with --map-image"
            )


def _pump(
    ctx: Context, step: stepgraph.Step, proc: subprocess.Popen[bytes], record: StepRecord
) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        _emit(ctx, step, raw.decode("utf-8", "replace").rstrip("\n"), record)


def _emit(ctx: Context, step: stepgraph.Step, line: str, record: StepRecord) -> None:
    text = ctx.mask(line)
    record.log_tail.append(text)
    del record.log_tail[:-LOG_TAIL]
    with ctx.log_lock:
        ctx.log(f"{step.label}: {text}")


def terminate(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=KILL_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# -- the graph -----------------------------------------------------------------


def schedule(
    steps: Sequence[stepgraph.Step],
    selected: set[str],
    run_one: Callable[[stepgraph.Step], StepRecord],
    records: dict[str, StepRecord],
    cancel: threading.Event,
    build_deadline: float,
) -> str:
    """Run selected steps as their dependencies allow; the build's status."""
    deps = stepgraph.dependencies(steps)
    ok: set[str] = {s.key for s in steps if s.key not in selected}
    pending = [s for s in steps if s.key in selected]
    running: dict[str, threading.Thread] = {}
    finished = threading.Condition()
    status = "SUCCESS"

    def worker(step: stepgraph.Step) -> None:
        run_one(step)
        with finished:
            finished.notify_all()

    with finished:
        while pending or running:
            for key in [k for k, t in running.items() if not t.is_alive()]:
                del running[key]
                rec = records[key]
                if rec.status == "SUCCESS" or (rec.status == "FAILURE" and rec.allowed_failure):
                    ok.add(key)
                elif status == "SUCCESS" and rec.status in ("FAILURE", "TIMEOUT"):
                    status = "FAILURE"
                    cancel.set()
            if time.monotonic() > build_deadline and status == "SUCCESS":
                status = "TIMEOUT"
                cancel.set()
            if not cancel.is_set():
                for step in list(pending):
                    if all(d in ok for d in deps[step.key]):
                        pending.remove(step)
                        thread = threading.Thread(target=worker, args=(step,), daemon=True)
                        running[step.key] = thread
                        thread.start()
            else:
                for step in pending:
                    records[step.key].status = "CANCELLED"
                pending = []
            if running:
                finished.wait(timeout=0.1)
            elif pending:
                # Nothing runs and nothing can start: a dependency failed.
                for step in pending:
                    records[step.key].status = "CANCELLED"
                pending = []
    return status


# -- the build -----------------------------------------------------------------
