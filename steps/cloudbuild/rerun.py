"""``gitops-cloudbuild rerun BUILD_ID``: run a recorded build again, exactly.

Like Cloud Build's retry: the same config (as recorded, not as the file reads
now), substitutions, commit, engine and step selection; a new BUILD_ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from steps.cloudbuild.records import MASK, RECORDS, BuildRecord, Log, load_record
from steps.cloudbuild.run import run_build, summary
from steps.lib.cli import StepParser, StepRun, add_common_options, run_step

PROG = "gitops-cloudbuild rerun"


def rerun_build(
    build_id: str,
    records_dir: Path,
    *,
    log: Log | None = None,
    extra_env: Mapping[str, str] | None = None,
    metadata_server: bool | None = None,
) -> BuildRecord:
    """Run the build recorded as ``build_id`` again; its new record.

    The environment given to the first run (``extra_env``, masked values
    excepted) is given again, updated with ``extra_env``.
    """
    old = load_record(build_id, records_dir)
    request = old.request
    substitutions = dict(request.get("substitutions") or {})
    for key, value in (request.get("built_ins") or {}).items():
        substitutions.setdefault(key, value)
    secret_file = request.get("secret_env_file")
    # Values that were secrets are masked in the record: the caller gives them again.
    recorded_env = {k: v for k, v in (request.get("extra_env") or {}).items() if v != MASK}
    return run_build(
        Path(request["config_path"]),
        Path(request["source"]),
        substitutions=substitutions,
        engine=request.get("engine", "process"),
        only=request.get("only") or (),
        skip=request.get("skip") or (),
        secret_env_file=Path(secret_file) if secret_file else None,
        map_images=request.get("map_images") or (),
        records_dir=records_dir,
        project_id=request.get("project_id"),
        commit=request.get("commit") or None,
        config_data=request.get("config"),
        log=log,
        extra_env={**recorded_env, **(extra_env or {})},
        push_images=request.get("push_images", True),
        started_by=request.get("started_by", "trigger"),
        metadata_server=request.get("metadata_server", True)
        if metadata_server is None
        else metadata_server,
    )


def parser() -> StepParser:
    p = StepParser(PROG, "Run a recorded build again, exactly (a new BUILD_ID).")
    p.add_argument("build_id", metavar="BUILD_ID")
    p.add_argument("--records", metavar="DIR", help=f"the records directory (default ./{RECORDS})")
    add_common_options(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    def body(run: StepRun) -> dict[str, Any]:
        args = parser().parse_step_args(argv)
        run.result_file = args.result_file
        records = Path(args.records) if args.records else Path.cwd() / RECORDS
        return summary(rerun_build(args.build_id, records))

    return run_step(PROG, body)
