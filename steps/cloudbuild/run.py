"""``gitops-cloudbuild run CONFIG --source DIR``: run a build config locally.

The flow: flags -> built-ins from the source's Git state -> the config checked
and substituted (steps.cloudbuild.config) -> a workspace copied from the
source -> the steps run as their ``waitFor`` graph allows, on threads, each as
a process (or a container) with ``/workspace``, ``HOME=/builder/home``,
``$BUILDER_OUTPUT`` and a loopback GCE metadata server -> a build record that
``gitops-cloudbuild rerun`` can replay.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from steps.cloudbuild import config, stepgraph
from steps.cloudbuild import engine as engines
from steps.cloudbuild.execute import Context, run_step_in, schedule, terminate
from steps.cloudbuild.records import (
    RECORDS,
    BuildRecord,
    Log,
    Masker,
    StepRecord,
    built_ins,
    git_output,
    read_secret_file,
)
from steps.cloudbuild.substitutions import parse_pairs
from steps.lib.cli import StepParser, StepRun, add_common_options, run_step
from steps.lib.errors import UsageError
from steps.lib.git_env import hardened_env
from steps.lib.output import say, write_atomic

PROG = "gitops-cloudbuild run"
ENGINES = ("process", "podman", "docker")
DEFAULT_PROJECT = "sandbox-project"
DEFAULT_BUILD_TIMEOUT = 3600.0


def run_build(
    config_path: Path,
    source: Path,
    *,
    substitutions: Mapping[str, str] | None = None,
    engine: str = "process",
    only: Sequence[str] = (),
    skip: Sequence[str] = (),
    write_workspace: Path | None = None,
    secret_env_file: Path | None = None,
    secret_env: Mapping[str, str] | None = None,
    map_images: Sequence[str] = (),
    records_dir: Path | None = None,
    project_id: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    log: Log | None = None,
    commit: str | None = None,
    config_data: Mapping[str, Any] | None = None,
    metadata_server: bool | str = True,
    push_images: bool = True,
    started_by: str = config.TRIGGER,
) -> BuildRecord:
    """Run a build config locally and return (and write) its record.

    Raises ``UsageError`` for a config Cloud Build would refuse or bad inputs;
    a failing step is a record with status ``FAILURE``, not an exception.

    ``metadata_server``: an address (``HOST:PORT``) of a GCE metadata server to
    give the steps (the sandbox's, whose tokens its GKE stand-in accepts);
    ``True`` uses ``GCE_METADATA_HOST`` when set (in ``extra_env`` or here),
    else starts a loopback one (when the sandbox package is installed);
    ``False``: none.
    """
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: expected one of {', '.join(ENGINES)}")
    source = Path(source).resolve()
    if not source.is_dir():
        raise UsageError(f"--source {source}: not a directory")
    emit = log or (lambda line: say(line))
    given = dict(substitutions or {})
    project = (
        project_id or given.get("PROJECT_ID") or os.environ.get("PROJECT_ID") or DEFAULT_PROJECT
    )
    build_id = str(uuid.uuid4())
    data = dict(config_data) if config_data is not None else config.load(Path(config_path))
    values_in, resolved = _resolve(
        config_path, source, data, given, project, build_id, started_by, commit
    )
    steps = stepgraph.build_steps(resolved.data)
    selected = _selected(steps, only, skip)
    secrets = dict(secret_env or {})
    if secret_env_file is not None:
        secrets.update(read_secret_file(Path(secret_env_file)))
    options = dict(resolved.data.get("options") or {})
    _check_secrets(steps, selected, options, secrets)
    try:
        maps = engine_maps(map_images)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    mask = Masker(secrets)
    records_path = Path(records_dir) if records_dir else source / RECORDS
    request = {
        "config_path": str(Path(config_path).resolve()),
        "config": data,
        "source": str(source),
        "substitutions": given,
        "commit": values_in["COMMIT_SHA"],
        "built_ins": {k: values_in[k] for k in ("BRANCH_NAME", "REPO_NAME", "COMMIT_SHA")},
        "project_id": project,
        "engine": engine,
        "only": list(only),
        "skip": list(skip),
        "map_images": list(map_images),
        "secret_env_file": str(Path(secret_env_file).resolve()) if secret_env_file else None,
        "records_dir": str(records_path),
        "extra_env": dict(extra_env or {}),
        "metadata_server": metadata_server,
        "push_images": push_images,
        "started_by": started_by,
    }
    record, by_key = _new_record(build_id, steps, selected, records_path, resolved, mask, request)
    scratch = Path(tempfile.mkdtemp(prefix="gitops-cloudbuild-"))
    extra = dict(extra_env or {})
    metadata_address, server = _metadata(metadata_server, extra, project, emit)
    try:
        workspace = _workspace(
            source, write_workspace, scratch, values_in["COMMIT_SHA"] if commit else None
        )
        record.workspace = str(workspace)
        _write(record)
        ctx = _context(
            engine, workspace, scratch, resolved, options, secrets, extra, maps, mask, emit
        )
        ctx.base_env.update(_metadata_env(metadata_address))
        _make_volumes(ctx, steps)
        emit(f"BUILD {build_id} ({len(selected)} of {len(steps)} steps, engine {engine})")
        _execute(ctx, steps, selected, by_key, record, data)
        if record.status == "SUCCESS" and push_images and not only and not skip:
            record.images = push_built_images(resolved.data.get("images") or [], engine, emit)
            if any(item["status"] != "SUCCESS" for item in record.images):
                record.status = "FAILURE"
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    record.finished = time.time()
    _write(record)
    emit(f"BUILD {record.status}: {build_id} (record: {record.path})")
    return record


def _new_record(
    build_id: str,
    steps: Sequence[stepgraph.Step],
    selected: set[str],
    records_path: Path,
    resolved: config.Resolved,
    mask: Masker,
    request: dict[str, Any],
) -> tuple[BuildRecord, dict[str, StepRecord]]:
    """The build's record (secrets masked), and each step's record by key."""
    record = BuildRecord(
        build_id=build_id,
        status="WORKING",
        steps=[StepRecord(id=s.id, index=s.index, name=s.name) for s in steps],
        path=records_path / f"{build_id}.json",
        substitutions=mask.deep({k: v for k, v in resolved.values.items() if v != ""}),
        request=mask.deep(request),
        config=mask.deep(resolved.data),
        started=time.time(),
    )
    by_key = {s.key: r for s, r in zip(steps, record.steps, strict=True)}
    for step in steps:
        if step.key not in selected:
            by_key[step.key].status = "SKIPPED"
    return record, by_key


def _make_volumes(ctx: Context, steps: Sequence[stepgraph.Step]) -> None:
    """A directory per named volume (the build's options' and every step's)."""
    options = ctx.options
    for volume in [
        *(options.get("volumes") or []),
        *(v for s in steps for v in [asdict(x) for x in s.volumes]),
    ]:
        ctx.volumes.setdefault(volume["name"], _mkdir(ctx.scratch / "volumes" / volume["name"]))


def _resolve(
    config_path: Path,
    source: Path,
    data: Mapping[str, Any],
    given: Mapping[str, str],
    project: str,
    build_id: str,
    started_by: str,
    commit: str | None,
) -> tuple[dict[str, str], config.Resolved]:
    """The built-in values, and the config checked as Cloud Build would and resolved."""
    try:
        config_rel = str(Path(config_path).resolve().relative_to(source))
    except ValueError:
        config_rel = str(config_path)
    if started_by not in config.STARTED_BY:
        raise UsageError(f"--started-by {started_by!r}: expected trigger or submit")
    values_in = built_ins(source, config_rel, project, build_id, given, started_by)
    if commit:
        values_in.update(COMMIT_SHA=commit, REVISION_ID=commit, SHORT_SHA=commit[:7])
    report = config.check(data, given, values_in, started_by=started_by)
    if report.errors:
        raise UsageError(f"{config_path}: {'; '.join(report.errors)}")
    return values_in, config.resolve(report.data, given, values_in)


def _selected(
    steps: Sequence[stepgraph.Step], only: Sequence[str], skip: Sequence[str]
) -> set[str]:
    """The keys of the steps ``--only``/``--skip`` leave to run."""
    known = {s.key for s in steps}
    for ident in [*only, *skip]:
        if ident not in known:
            raise UsageError(f"--only/--skip {ident!r}: no step with that id")
    return {s.key for s in steps if (not only or s.key in only) and s.key not in skip}


def _check_secrets(
    steps: Sequence[stepgraph.Step],
    selected: set[str],
    options: Mapping[str, Any],
    secrets: Mapping[str, str],
) -> None:
    """Every secretEnv a selected step names has a value, before anything runs."""
    for step in steps:
        if step.key not in selected:
            continue
        for name in [*(options.get("secretEnv") or []), *step.secret_env]:
            if name not in secrets:
                raise UsageError(
                    f"{step.label}: secretEnv {name} has no value: "
                    f"add {name}=... to --secret-env-file"
                )


def _metadata_env(address: str | None) -> dict[str, str]:
    return {"GCE_METADATA_HOST": address, "GCE_METADATA_IP": address} if address else {}


def _context(
    engine: str,
    workspace: Path,
    scratch: Path,
    resolved: config.Resolved,
    options: dict[str, Any],
    secrets: dict[str, str],
    extra: dict[str, str],
    maps: list[engines.Mapping_],
    mask: Masker,
    emit: Log,
) -> Context:
    """What every step of the build shares: workspace, environment, volumes, masking."""
    base_env = {**os.environ, **extra}
    here = str(Path(sys.executable).parent)
    base_env["PATH"] = here + os.pathsep + base_env.get("PATH", os.defpath)
    return Context(
        engine=engine,
        workspace=workspace,
        home=_mkdir(scratch / "home"),
        scratch=scratch,
        volumes={},
        values=resolved.values,
        options=options,
        secrets=secrets,
        base_env=base_env,
        extra_env=extra,
        maps=maps,
        mask=mask,
        log=emit,
        cancel=threading.Event(),
    )


def _execute(
    ctx: Context,
    steps: Sequence[stepgraph.Step],
    selected: set[str],
    by_key: dict[str, StepRecord],
    record: BuildRecord,
    data: Mapping[str, Any],
) -> None:
    """Run the selected steps in their graph until done, failed or the build's timeout;
    on an interruption, stop every step and record the build as cancelled."""
    emit = ctx.log
    timeout = data.get("timeout")
    deadline = time.monotonic() + (
        config.parse_duration(timeout) if timeout else DEFAULT_BUILD_TIMEOUT
    )

    def run_one(step: stepgraph.Step) -> StepRecord:
        rec = by_key[step.key]
        rec.status = "WORKING"
        emit(f"Starting {step.label}")
        run_step_in(ctx, step, rec)
        rec.duration = round((rec.finished or time.time()) - (rec.started or time.time()), 3)
        emit(f"Finished {step.label}: {rec.status}" + (f" ({rec.error})" if rec.error else ""))
        return rec

    try:
        record.status = schedule(steps, selected, run_one, by_key, ctx.cancel, deadline)
    except BaseException:
        ctx.cancel.set()
        for proc in list(ctx.processes.values()):
            terminate(proc)
        record.status = "CANCELLED"
        record.finished = time.time()
        _write(record)
        raise


class _Stoppable(Protocol):
    def stop(self) -> None: ...


def _metadata(
    choice: bool | str, extra: Mapping[str, str], project: str, emit: Log
) -> tuple[str | None, _Stoppable | None]:
    """The metadata server's address for the steps, and one we started (to stop)."""
    if isinstance(choice, str):
        return choice, None
    if not choice:
        return None, None
    existing = extra.get("GCE_METADATA_HOST") or os.environ.get("GCE_METADATA_HOST")
    if existing:
        return existing, None
    try:  # a development install; step images leave steps.sandbox out
        from steps.sandbox.gcp import GcpSandbox
    except ImportError:
        emit("no GCE metadata server (set GCE_METADATA_HOST or --metadata-server to give one)")
        return None, None
    server = GcpSandbox(project=project).start()
    return server.address, server


def push_built_images(images: Sequence[str], engine: str, emit: Log) -> list[dict[str, str]]:
    """Push the config's ``images`` once every step succeeded, as Cloud Build does."""
    pushed: list[dict[str, str]] = []
    for image in images:
        if engine == "docker":
            argv = [shutil.which("docker") or "docker", "push", image]
            env = dict(os.environ)
        else:
            tls = ["--tls-verify=false"] if engines.registry_insecure(image) else []
            argv = [shutil.which("buildah") or "buildah", "push", *tls, image, f"docker://{image}"]
            env = {**os.environ, **engines.containers_environ()}
        emit(f"PUSH {image}")
        try:
            proc = subprocess.run(
                argv, env=env, capture_output=True, text=True, check=False, timeout=600
            )
            ok, detail = proc.returncode == 0, (proc.stderr or proc.stdout).strip()
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, detail = False, str(exc)
        if not ok:
            emit(f"ERROR: pushing {image} failed: {detail.splitlines()[-1] if detail else ''}")
        pushed.append({"image": image, "status": "SUCCESS" if ok else "FAILURE"})
    return pushed


def engine_maps(items: Sequence[str]) -> list[engines.Mapping_]:
    return engines.parse_map_images(items)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _workspace(source: Path, target: Path | None, scratch: Path, commit: str | None) -> Path:
    workspace = Path(target).resolve() if target else scratch / "workspace"
    if workspace != source:  # --write-workspace SOURCE: the build works in place
        if workspace.is_relative_to(source):
            raise UsageError(f"--write-workspace {workspace}: inside --source {source}")
        ignore = shutil.ignore_patterns(".gitops-cloudbuild")
        shutil.copytree(source, workspace, symlinks=True, ignore=ignore, dirs_exist_ok=True)
    if (
        commit
        and (workspace / ".git").exists()
        and git_output(workspace, "rev-parse", "HEAD") != commit
    ):
        proc = subprocess.run(
            ["git", "-C", str(workspace), "checkout", "--quiet", "--force", "--detach", commit],
            capture_output=True,
            text=True,
            check=False,
            env=hardened_env(),  # no hooks of the copied repository run on the host
        )
        if proc.returncode != 0:
            raise UsageError(f"commit {commit} is not in {source}: {proc.stderr.strip()}")
    return workspace


def _write(record: BuildRecord) -> None:
    assert record.path is not None
    write_atomic(record.path, json.dumps(record.as_dict(), indent=2) + "\n")


# -- command line --------------------------------------------------------------


def add_run_options(p: StepParser) -> None:
    p.add_argument(
        "--engine",
        choices=ENGINES,
        default="process",
        help="how steps run: process (our stage images on the host, other images in podman "
        "when installed) or every step in its image with podman/docker",
    )
    p.add_argument(
        "--only", nargs="+", action="extend", default=[], metavar="ID", help="run only these steps"
    )
    p.add_argument(
        "--skip", nargs="+", action="extend", default=[], metavar="ID", help="skip these steps"
    )
    p.add_argument(
        "--map-image",
        action="append",
        default=[],
        metavar="PATTERN=COMMAND_OR_IMAGE",
        help="run matching images as a host command or as another image; '*' matches any "
        "text and fills the '*'s of the target in order (see steps/cloudbuild/engine.py)",
    )
    p.add_argument(
        "--env",
        dest="step_env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra variable every step gets, on the host and in containers alike",
    )
    p.add_argument(
        "--metadata-server",
        metavar="HOST:PORT",
        help="the GCE metadata server steps use (default: $GCE_METADATA_HOST if set, else "
        "a loopback one started for the build; 'none' for none)",
    )
    p.add_argument(
        "--started-by",
        choices=config.STARTED_BY,
        default=config.TRIGGER,
        help="run as a trigger starts the build (default: ALLOW_LOOSE, dynamic "
        "substitutions, built-ins from the source's Git state) or as gcloud builds submit",
    )
    p.add_argument("--secret-env-file", metavar="FILE", help="KEY=VALUE lines for secretEnv")
    p.add_argument("--records", metavar="DIR", help="where build records go")
    p.add_argument("--project-id", metavar="ID", help=f"PROJECT_ID (default {DEFAULT_PROJECT})")
    p.add_argument(
        "--no-push-images",
        dest="push_images",
        action="store_false",
        help="do not push the config's images: after a successful build",
    )


def parser() -> StepParser:
    p = StepParser(PROG, "Run a cloudbuild.yaml locally, as Cloud Build would.")
    p.add_argument("config", metavar="CONFIG", help="the build config (YAML or JSON)")
    p.add_argument("--source", default=".", metavar="DIR", help="the source (copied to /workspace)")
    p.add_argument(
        "--substitutions", default="", metavar="K=V,...", help="substitutions for the build"
    )
    p.add_argument("--write-workspace", metavar="DIR", help="use (and keep) DIR as /workspace")
    add_run_options(p)
    add_common_options(p)
    return p


def parse_env(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env: expected KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def _metadata_choice(value: str | None) -> bool | str:
    if value is None:
        return True
    return False if value == "none" else value


def summary(record: BuildRecord) -> dict[str, Any]:
    return {
        "status": "ok" if record.status == "SUCCESS" else "failed",
        "build_id": record.build_id,
        "build_status": record.status,
        "record": str(record.path),
        "steps": [{"id": s.id, "status": s.status, "exit_code": s.exit_code} for s in record.steps],
        "exit_code": 0 if record.status == "SUCCESS" else 1,
    }


def main(argv: Sequence[str] | None = None) -> int:
    def body(run: StepRun) -> dict[str, Any]:
        args = parser().parse_step_args(argv)
        run.result_file = args.result_file
        record = run_build(
            Path(args.config),
            Path(args.source),
            substitutions=parse_pairs(args.substitutions),
            engine=args.engine,
            only=args.only,
            skip=args.skip,
            write_workspace=Path(args.write_workspace) if args.write_workspace else None,
            secret_env_file=Path(args.secret_env_file) if args.secret_env_file else None,
            map_images=args.map_image,
            records_dir=Path(args.records) if args.records else None,
            project_id=args.project_id or os.environ.get("GITOPS_PROJECT_ID"),
            push_images=args.push_images,
            extra_env=parse_env(args.step_env),
            metadata_server=_metadata_choice(args.metadata_server),
            started_by=args.started_by,
        )
        return summary(record)

    return run_step(PROG, body)
