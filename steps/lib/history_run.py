"""gitops-history's work: fetch only the branches and the notes it reads into one
private bare repository, read them with ``git log``, and show the history
(``steps/history.py`` reads the flags into a ``Config``). The model is
``steps.lib.history_model``'s, the chain's ``steps.lib.history_chain``'s and
the text forms ``steps.lib.history_text``'s, all pure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.lib.deploy_notes import MAX_NOTE, NOTES_REF
from steps.lib.errors import UsageError
from steps.lib.git_env import git_credentials, hardened_env
from steps.lib.git_failures import classify_failure, raise_for_failure
from steps.lib.git_inputs import RepoLocation
from steps.lib.git_retry import with_retries
from steps.lib.gitrepo import NETWORK_TIMEOUT
from steps.lib.history_chain import chain_attempts, environment_rows
from steps.lib.history_model import (
    AttemptRow,
    Candidate,
    Deployment,
    LogEntry,
    build_rows,
    candidate_of,
    deployment_of,
    iso,
    parse_log,
    summarize,
    touches,
)
from steps.lib.history_text import render_chain_table, render_json, render_link, render_table
from steps.lib.output import say, write_atomic

if TYPE_CHECKING:
    from steps.lib.gitrepo import Workspace

STEP = "history"
"""The stage's name, in its messages."""


@dataclass(frozen=True)
class Config:
    location: RepoLocation
    subdir: str
    candidate: str
    production: str
    since: int | None
    until: int | None
    fmt: str
    output: Path | None
    build_url: str
    commit_url: str | None
    project: str | None
    source_repo: Path | None
    chain: tuple[str, ...] = ()


def add_links(rows: Sequence[AttemptRow], config: Config) -> None:
    for row in rows:
        c = row.candidate
        fields = {
            "build_id": c.build_id,
            "project": config.project,
            "commit": c.sha,
            "short_commit": c.sha[:12],
            "source_commit": c.source_commit,
            "source_repo": c.source_repo,
        }
        for key, template in (("build_url", config.build_url), ("commit_url", config.commit_url)):
            link = render_link(template, fields)
            if link:
                row.links[key] = link


# --------------------------------------------------------------------------- I/O


@dataclass
class Fetched:
    """What one fetch brought into the workspace."""

    candidate: str | None
    production: str | None
    notes: bool
    shallow: bool = False
    fetches: int = 0


class HistoryReader:
    """Fetches the refs once into a private bare repository and reads them."""

    def __init__(self, ws: Workspace, config: Config) -> None:
        self.ws = ws
        self.config = config
        self.fetches = 0

    def _git_fetch(self, refspecs: Sequence[str], *options: str) -> str | None:
        """One fetch; None if fine, else the stderr of a 'no commits' refusal."""
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-auto-gc"]
        result = self.ws.run(
            *args, *options, self.config.location.url, *refspecs, timeout=NETWORK_TIMEOUT
        )
        self.fetches += 1
        if result.status == 0:
            return None
        if "no commits selected" in result.stderr:
            return result.stderr
        raise_for_failure(classify_failure(result.stderr), self.config.location, "fetch")
        return None

    def fetch(self) -> Fetched:
        config = self.config
        wanted = {
            f"refs/heads/{branch}": f"refs/remotes/origin/{branch}"
            for branch in (config.candidate, *config.chain, config.production)
        }
        listed = with_retries(
            lambda: self._ls_remote([*wanted, NOTES_REF]), f"ls-remote {config.location.url}", STEP
        )
        specs = [f"+{remote}:{local}" for remote, local in wanted.items() if remote in listed]
        if specs and config.since is not None:
            # One ref at a time: fetched together, a ref with nothing recent
            # would come whole; alone, it is refused and we take its tip.
            for spec in specs:
                self._fetch_recent(spec, f"--shallow-since={iso(config.since)}")
        elif specs:
            with_retries(lambda: self._git_fetch(specs), "fetch", STEP)
        notes = NOTES_REF in listed
        if notes:
            with_retries(
                lambda: self._git_fetch([f"+{NOTES_REF}:{NOTES_REF}"], "--depth=1"), "fetch", STEP
            )
        shallow_now = self.ws.is_shallow() if specs else False
        return Fetched(
            candidate=self.ws.resolve_commit(wanted[f"refs/heads/{config.candidate}"])
            if specs and f"refs/heads/{config.candidate}" in listed
            else None,
            production=self.ws.resolve_commit(wanted[f"refs/heads/{config.production}"])
            if specs and f"refs/heads/{config.production}" in listed
            else None,
            notes=notes,
            shallow=shallow_now,
            fetches=self.fetches,
        )

    def _fetch_recent(self, spec: str, shallow_since: str) -> None:
        if with_retries(lambda: self._git_fetch([spec], shallow_since), "fetch", STEP):
            with_retries(lambda: self._git_fetch([spec], "--depth=1"), "fetch", STEP)

    def _ls_remote(self, refs: Sequence[str]) -> set[str]:
        result = self.ws.run("ls-remote", self.config.location.url, *refs, timeout=NETWORK_TIMEOUT)
        if result.status != 0:
            raise_for_failure(classify_failure(result.stderr), self.config.location, "ls-remote")
        return {line.split("\t", 1)[1] for line in result.stdout.splitlines() if "\t" in line}

    def notes(self) -> dict[str, str]:
        """Each annotated commit's note (notes over ``MAX_NOTE`` bytes are skipped)."""
        listed = self.ws.check("notes", f"--ref={NOTES_REF}", "list")
        pairs = [line.split() for line in listed.splitlines() if len(line.split()) == 2]
        blobs = self.ws.read_blobs([blob for blob, _ in pairs], limit=MAX_NOTE)
        skipped = sum(1 for blob, _ in pairs if blob not in blobs)
        if skipped:
            say(f"{STEP}: warning: {skipped} note(s) over {MAX_NOTE} bytes ignored")
        return {
            commit: blobs[blob].decode("utf-8", "replace")
            for blob, commit in pairs
            if blob in blobs
        }

    def log(self, tip: str, exclude: str | None, notes: bool) -> list[LogEntry]:
        args = ["log", "-z", "--no-notes", "--format=%H%x1f%ct%x1f%B", tip]
        if exclude:
            args.append(f"^{exclude}")
        if self.config.subdir:
            args += ["--", self.config.subdir]
        entries = parse_log(self.ws.check(*args), self.notes() if notes else None)
        boundary = self.ws.shallow_commits()
        return [e for e in entries if touches(e, self.config.subdir, boundary)]


def source_times(directory: Path, shas: Sequence[str]) -> dict[str, int]:
    """Committer times of the commits found in a local clone of the app repo."""
    wanted = sorted({s for s in shas if re.fullmatch(r"[0-9a-fA-F]{7,64}", s)})
    if not wanted:
        return {}
    done = subprocess.run(
        ["git", "-C", str(directory), "cat-file", "--batch"],
        env=hardened_env(),  # the user's clone: its config runs nothing of ours
        input="".join(f"{s}\n" for s in wanted).encode(),
        capture_output=True,
        check=False,
        timeout=NETWORK_TIMEOUT,
    )
    if done.returncode != 0:
        raise UsageError(f"--source-repo {directory}: not a Git repository")
    times: dict[str, int] = {}
    data, pos = done.stdout, 0
    for sha in wanted:
        end = data.index(b"\n", pos)
        header = data[pos:end].split()
        pos = end + 1
        if len(header) != 3:
            continue  # missing or ambiguous
        size = int(header[2])
        body = data[pos : pos + size]
        pos += size + 1
        if header[1] != b"commit":
            continue
        for line in body.split(b"\n\n", 1)[0].splitlines():
            if line.startswith(b"committer "):
                times[sha] = int(line.rsplit(b" ", 2)[-2])
    return times


def read_history(config: Config) -> tuple[list[Candidate], list[Deployment], Fetched]:
    from steps.lib.gitrepo import Workspace

    where = f" {config.subdir}" if config.subdir else ""
    say(f"{STEP}: reading {config.location.url} {config.candidate}, {config.production}{where}")
    with git_credentials(config.location) as env, Workspace(config.location, env) as ws:
        reader = HistoryReader(ws, config)
        fetched = reader.fetch()
        candidates: list[Candidate] = []
        deployments: list[Deployment] = []
        if fetched.candidate:
            entries = reader.log(fetched.candidate, fetched.production, fetched.notes)
            candidates = [c for c in map(candidate_of, entries) if c is not None]
        if fetched.production:
            deployments = [deployment_of(e) for e in reader.log(fetched.production, None, False)]
    say(
        f"{STEP}: {len(candidates)} attempts, {len(deployments)} production commits "
        f"({fetched.fetches} fetches{', shallow' if fetched.shallow else ''})"
    )
    return candidates, deployments, fetched


def render(
    config: Config,
    attempts: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    deployments: Sequence[Deployment],
) -> str:
    if config.fmt == "json":
        return render_json(attempts, summary)
    if config.fmt == "html":
        from steps.lib.history_html import render_html

        title = f"{config.location.url} {config.subdir}".strip()
        # Cloud Build's built-ins (automapSubstitutions) name the env build's trigger.
        trigger = {
            "name": os.environ.get("TRIGGER_NAME"),
            "region": os.environ.get("LOCATION"),
            "project": config.project,
        }
        deployed = [d.as_dict() for d in deployments]
        return render_html(attempts, summary, deployed, title=title, trigger=trigger)
    return render_table(attempts, summary)


def emit(config: Config, text: str) -> None:
    """The rendered history to --output (atomically) or stdout."""
    if config.output:
        write_atomic(config.output, text)
        say(f"{STEP}: wrote {config.output}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def result_head(config: Config) -> dict[str, Any]:
    return {
        "status": "ok",
        "repo": config.location.url,
        "path": config.subdir,
        "format": config.fmt,
        "output": str(config.output) if config.output else None,
    }


def history(config: Config, now: float) -> dict[str, Any]:
    candidates, deployments, fetched = read_history(config)
    until = config.until if config.until is not None else int(now)
    times = (
        source_times(config.source_repo, [c.source_commit or "" for c in candidates])
        if config.source_repo
        else None
    )
    rows = build_rows(candidates, deployments, times)
    add_links(rows, config)
    summary = summarize(rows, deployments, config.since, until)
    start = config.since
    shown = [r for r in rows if (start is None or r.time >= start) and r.time <= until]
    attempts = [r.as_dict() for r in shown]
    emit(config, render(config, attempts, summary, deployments))
    return {
        **result_head(config),
        "fetch": {
            "fetches": fetched.fetches,
            "shallow": fetched.shallow,
            "candidate_commits": len(candidates),
            "production_commits": len(deployments),
        },
        "summary": summary,
    }


def chain_history(config: Config, now: float) -> dict[str, Any]:
    """``--chain``: each release down the environments; the figures per environment."""
    from steps.lib.gitrepo import Workspace

    until = config.until if config.until is not None else int(now)
    with git_credentials(config.location) as env, Workspace(config.location, env) as ws:
        reader = HistoryReader(ws, config)
        fetched = reader.fetch()
        notes = reader.notes() if fetched.notes else {}
        candidates: list[Candidate] = []
        if fetched.candidate:
            entries = reader.log(fetched.candidate, fetched.production, fetched.notes)
            candidates = [c for c in map(candidate_of, entries) if c is not None]
        chain_entries = []
        for branch in config.chain:
            tip = ws.resolve_commit(f"refs/remotes/origin/{branch}")
            chain_entries.append((branch, reader.log(tip, None, False) if tip else []))
    per_env = environment_rows(candidates, chain_entries, notes)
    summaries = {
        env: summarize(rows, deployments, config.since, until)
        for env, rows, deployments, _ in per_env
    }
    releases = [
        r
        for r in chain_attempts(candidates, per_env)
        if (config.since is None or _epoch_of(r["time"]) >= config.since)
        and _epoch_of(r["time"]) <= until
    ]
    if config.fmt == "json":
        text = (
            json.dumps(
                {"chain": list(config.chain), "releases": releases, "environments": summaries},
                indent=2,
            )
            + "\n"
        )
    elif config.fmt == "html":
        from steps.lib.history_html import render_chain_html

        title = f"{config.location.url} {config.subdir}".strip()
        text = render_chain_html(config.chain, releases, summaries, title=title)
    else:
        text = render_chain_table(config.chain, releases, summaries)
    emit(config, text)
    return {
        **result_head(config),
        "chain": list(config.chain),
        "releases": len(releases),
        "environments": {
            env: {k: summary[k] for k in ("deployments", "rollbacks", "change_failure_rate")}
            for env, summary in summaries.items()
        },
    }


def _epoch_of(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
