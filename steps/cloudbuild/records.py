"""A local build's record (what ran, how it ended, what to replay), the built-in
substitutions from the source's Git state, and secret masking."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from steps.cloudbuild import config
from steps.cloudbuild.substitutions import BUILT_INS
from steps.lib.errors import UsageError
from steps.lib.git_env import hardened_env
from steps.lib.output import register_secret

RECORDS = Path(".gitops-cloudbuild") / "builds"
MASK = "[REDACTED]"

Log = Callable[[str], None]
# The sandbox's build service account (steps/sandbox/gcp.py serves the same).
SERVICE_ACCOUNT = "gitops-builder@sandbox-project.iam.gserviceaccount.com"


@dataclass
class StepRecord:
    id: str
    index: int
    name: str
    status: str = "QUEUED"  # SUCCESS FAILURE TIMEOUT CANCELLED SKIPPED
    exit_code: int | None = None
    duration: float = 0.0
    started: float | None = None
    finished: float | None = None
    output: str = ""
    allowed_failure: bool = False
    error: str = ""
    log_tail: list[str] = field(default_factory=list)
    ran_in: str = ""  # "host", or the engine and image: "podman localhost/x:1"


@dataclass
class BuildRecord:
    build_id: str
    status: str
    steps: list[StepRecord]
    path: Path | None = None
    substitutions: dict[str, str] = field(default_factory=dict)
    request: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    workspace: str = ""
    images: list[dict[str, str]] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    def step(self, ident: str) -> StepRecord:
        return next(s for s in self.steps if s.id == ident or str(s.index) == ident)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path) if self.path else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildRecord:
        fields = dict(data)
        fields["steps"] = [StepRecord(**s) for s in data.get("steps", [])]
        fields["path"] = Path(data["path"]) if data.get("path") else None
        return cls(**fields)


def load_record(build_id: str, records: Path) -> BuildRecord:
    path = records / f"{build_id}.json"
    try:
        return BuildRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError:
        raise UsageError(f"no build {build_id} in {records}") from None


# -- inputs --------------------------------------------------------------------


def git_output(source: Path, *args: str) -> str:
    """Git's answer, or "" (not a repository, or no git here: images without it)."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(source), *args],
            capture_output=True,
            text=True,
            check=False,
            env=hardened_env(),  # the user's checkout: its config runs nothing of ours
        )
    except OSError:
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def git_built_ins(source: Path) -> dict[str, str]:
    """COMMIT_SHA, SHORT_SHA, BRANCH_NAME, REPO_NAME as a trigger would set them."""
    commit = git_output(source, "rev-parse", "HEAD")
    branch = git_output(source, "rev-parse", "--abbrev-ref", "HEAD")
    url = git_output(source, "config", "--get", "remote.origin.url")
    repo = (url.rstrip("/").rsplit("/", 1)[-1] if url else source.resolve().name).removesuffix(
        ".git"
    )
    branch = "" if branch == "HEAD" else branch
    return {
        "COMMIT_SHA": commit,
        "REVISION_ID": commit,
        "SHORT_SHA": commit[:7],
        "BRANCH_NAME": branch,
        "REF_NAME": branch,
        "REPO_NAME": repo,
        "REPO_FULL_NAME": repo,
    }


def built_ins(
    source: Path,
    config_path: str,
    project_id: str,
    build_id: str,
    given: Mapping[str, str],
    started_by: str = config.TRIGGER,
) -> dict[str, str]:
    """Built-in substitutions: a trigger sets the source's Git state and its
    own name; ``gcloud builds submit`` sets only what ``--substitutions`` gives."""
    values = {name: "" for name in BUILT_INS}
    if started_by == config.TRIGGER:
        values.update(git_built_ins(source))
        values.update(TRIGGER_NAME="local", TRIGGER_BUILD_CONFIG_PATH=config_path)
    values.update(
        PROJECT_ID=project_id,
        PROJECT_NUMBER="123456789012",
        BUILD_ID=build_id,
        LOCATION="global",
        SERVICE_ACCOUNT_EMAIL=SERVICE_ACCOUNT,
        SERVICE_ACCOUNT=f"projects/{project_id}/serviceAccounts/{SERVICE_ACCOUNT}",
    )
    overrides = {k: v for k, v in given.items() if k in BUILT_INS}
    if "COMMIT_SHA" in overrides:
        overrides.setdefault("SHORT_SHA", overrides["COMMIT_SHA"][:7])
        overrides.setdefault("REVISION_ID", overrides["COMMIT_SHA"])
    values.update(overrides)
    return values


def read_secret_file(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"--secret-env-file {path}: {exc.strerror}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise UsageError(f"{path}:{number}: expected KEY=VALUE")
        values[key.strip()] = value
    return values


class Masker:
    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._values = sorted((v for v in secrets.values() if v), key=len, reverse=True)
        for value in self._values:
            register_secret(value)

    def __call__(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, MASK)
        return text

    def deep(self, node: Any) -> Any:
        if isinstance(node, str):
            return self(node)
        if isinstance(node, list):
            return [self.deep(n) for n in node]
        if isinstance(node, dict):
            return {k: self.deep(v) for k, v in node.items()}
        return node
