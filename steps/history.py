"""gitops-history: every deployment attempt and the headline figures, from Git alone.

The env repo already holds the story: each commit on ``candidate`` is an
attempt (push-candidate's trailers say which source commit, build and images),
each commit on ``production`` a deployment (promote's ``Promoted-From`` and,
for a rollback, ``Rollback-From``), and verify-rollout's verdicts are notes on
the candidate commits under ``refs/notes/gitops`` (see ``steps.lib.deploy_notes``).

The flow: flags -> fetch only ``candidate``, ``production`` (``--shallow-since``
with ``--since``) and the notes tip (depth 1) into one private bare repository
-> two ``git log`` runs -> pure functions classify each attempt and compute the
figures -> table, JSON or a self-contained HTML page.

Outcome of an attempt (first rule that applies):

- ``promoted``: a production commit says ``Promoted-From: candidate@<it>``;
- ``failed``: its latest verdict note says ``failed``;
- ``superseded``: its latest verdict note says ``superseded``;
- ``pending``: none of the above and it is the newest attempt (for the path);
- ``not-promoted``: none of the above and newer attempts exist.

Figures, over the period [``--since``, ``--until``] (defaults: the first
attempt or deployment on record, and now); "in the period" means the time of
the commit that records the event (candidate commit for attempts, production
commit for deployments), committer dates:

- deployments per day: production commits carrying ``Promoted-From``
  (rollbacks included) in the period, divided by the period's length in days,
  counted as at least one day (a repo a few hours old does not deploy
  "thousands of times a day");
- success rate: promoted attempts / attempts that are not pending, among the
  attempts of the period;
- lead time: for each attempt whose first promotion lies in the period, that
  production commit's time minus the source commit's committer time (with
  ``--source-repo`` and the commit found there) or else minus the candidate
  commit's time; median, and p90 by nearest rank (the ceil(0.9 n)-th smallest);
- change failure rate: (failed attempts + promoted attempts that a later
  rollback moved away from, i.e. named in ``Rollback-From``) / (promoted +
  failed attempts), among the attempts of the period;
- time to restore: an incident starts at the first failed attempt after the
  last production change and ends at the next production change (promotion or
  rollback); its duration is end - start; median over the incidents that
  started in the period and have ended (those still open are counted apart);
- production now: the newest production commit carrying ``Promoted-From``
  (for ``--path``, the newest touching it), the candidate it names and its
  time ("since").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steps.lib.cli import (
    Provenance,
    StepParser,
    StepRun,
    add_common_options,
    run_step,
    version_text,
)
from steps.lib.deploy_notes import MAX_NOTE, NOTES_REF, OutcomeNote, parse_note
from steps.lib.errors import UsageError
from steps.lib.git_env import git_credentials, hardened_env
from steps.lib.git_failures import classify_failure, raise_for_failure
from steps.lib.git_inputs import RepoLocation, parse_repo, validate_branch, validate_subpath
from steps.lib.git_messages import tool_trailers
from steps.lib.git_retry import with_retries
from steps.lib.gitrepo import NETWORK_TIMEOUT
from steps.lib.history_model import (
    OUTCOMES,
    AttemptRow,
    Candidate,
    Deployment,
    LogEntry,
    build_rows,
    candidate_of,
    deployment_of,
    iso,
    last_value,
    parse_log,
    short_image,
    summarize,
    touches,
)
from steps.lib.output import say, write_atomic
from steps.lib.timefmt import duration

if TYPE_CHECKING:
    from steps.lib.gitrepo import Workspace

STEP = "history"
FORMATS = ("table", "json", "html")
DEFAULT_BUILD_URL = (
    "https://console.cloud.google.com/cloud-build/builds;region=global/{build_id}?project={project}"
)
URL_FIELDS = ("build_id", "project", "commit", "short_commit", "source_commit", "source_repo")

DESCRIPTION = """\
Every deployment attempt recorded on the env repo's candidate branch, what
became of it (promoted, failed, superseded, not-promoted, pending), rollbacks,
and the headline figures: deployments per day, success rate, lead time,
change failure rate, time to restore, what runs in production and since when.

examples:
  gitops-history --repo https://github.com/o/env --path web --since 30d
  gitops-history --repo . --format html --output history.html --project my-proj

dates (--since, --until): 2026-11-01, 2026-11-01T12:00:00Z, or 30d / 12h / 2w ago

environment:
  GIT_TOKEN, GIT_USERNAME      HTTPS token (user defaults to x-access-token)
  GIT_SSH_KEY, GIT_KNOWN_HOSTS SSH private key and known_hosts lines
  PROJECT_ID                   default for --project (build links)
"""


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


def build_parser() -> StepParser:
    parser = StepParser("gitops-history", DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_option("--repo", required=True, metavar="URL", help="env repo URL or local path")
    parser.add_option("--path", metavar="SUBDIR", help="only attempts touching this service path")
    parser.add_option("--since", metavar="DATE", help="start of the period (default: all history)")
    parser.add_option("--until", metavar="DATE", help="end of the period (default: now)")
    parser.add_option(
        "--format",
        dest="fmt",
        choices=FORMATS,
        metavar="FORMAT",
        help="table (default), json, html",
    )
    parser.add_option("--output", metavar="FILE", help="write here instead of stdout")
    parser.add_option(
        "--build-url",
        metavar="TEMPLATE",
        help="link for a build; fields {build_id} {project} {commit} {short_commit} "
        "{source_commit} {source_repo} (default: the Cloud Build console's build page)",
    )
    parser.add_option(
        "--commit-url", metavar="TEMPLATE", help="link for a candidate commit (same fields)"
    )
    parser.add_option(
        "--project", metavar="ID", help="project for build links (default: $PROJECT_ID)"
    )
    parser.add_option(
        "--source-repo",
        metavar="DIR",
        help="local clone of the app repo: lead time starts at the source commit's time",
    )
    parser.add_option("--from", dest="candidate", metavar="BRANCH", help="default: candidate")
    parser.add_option("--to", dest="production", metavar="BRANCH", help="default: production")
    parser.add_option(
        "--chain",
        nargs="+",
        metavar="ENV",
        help="environments' branches after --from, in order (staging production): "
        "how far each release went",
    )
    add_common_options(parser)
    return parser


# --------------------------------------------------------------------------- pure: inputs

_RELATIVE = re.compile(r"^(\d+)\s*([hdw])$")


def parse_when(text: str, now: float, flag: str) -> int:
    """A date, a UTC datetime, or ``30d``/``12h``/``2w`` before ``now``: epoch seconds."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        hours = {"h": 1, "d": 24, "w": 24 * 7}[relative.group(2)] * int(relative.group(1))
        return int(now - hours * 3600)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: expected YYYY-MM-DD, an ISO 8601 time or 30d/12h/2w"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def check_template(template: str, flag: str) -> str:
    """A URL template whose ``{fields}`` are all known."""
    try:
        template.format_map({name: "x" for name in URL_FIELDS})
    except (KeyError, ValueError, IndexError) as exc:
        raise UsageError(
            f"{flag} {template!r}: unknown field {exc}; use {', '.join(URL_FIELDS)}"
        ) from None
    return template


def config_from_args(args: Any, provenance: Provenance, now: float) -> Config:
    since = parse_when(args.since, now, "--since") if args.since else None
    until = parse_when(args.until, now, "--until") if args.until else None
    if since is not None and until is not None and until < since:
        raise UsageError("--until is before --since")
    candidate = validate_branch(args.candidate or "candidate", "--from")
    chain = tuple(validate_branch(env, "--chain") for env in args.chain or ())
    if chain and args.production:
        raise UsageError("--chain names the environments' branches: --to goes without it")
    if len(set(chain)) != len(chain) or candidate in chain:
        raise UsageError("--chain: each environment once, and not --from")
    production = chain[-1] if chain else validate_branch(args.production or "production", "--to")
    if candidate == production:
        raise UsageError("--from and --to must be different branches")
    source_repo = Path(args.source_repo) if args.source_repo else None
    if source_repo is not None and not source_repo.exists():
        raise UsageError(f"--source-repo {args.source_repo}: no such directory")
    return Config(
        location=parse_repo(args.repo),
        subdir=validate_subpath(args.path),
        candidate=candidate,
        production=production,
        since=since,
        until=until,
        fmt=args.fmt or "table",
        output=Path(args.output) if args.output else None,
        build_url=check_template(args.build_url or DEFAULT_BUILD_URL, "--build-url"),
        commit_url=check_template(args.commit_url, "--commit-url") if args.commit_url else None,
        project=args.project or provenance.project_id,
        source_repo=source_repo,
        chain=chain,
    )


def render_link(template: str | None, fields: Mapping[str, str | None]) -> str | None:
    """``template`` filled in, or None when a field it uses is unknown."""
    if not template:
        return None
    used = re.findall(r"{(\w+)}", template)
    if any(not fields.get(name) for name in used):
        return None
    from urllib.parse import quote

    return template.format_map({k: quote(v or "", safe="") for k, v in fields.items()})


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


# --------------------------------------------------------------------------- pure: rendering


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _short(value: str | None, width: int = 12) -> str:
    return (value or "-")[:width]


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    period, outcomes = summary["period"], summary["outcomes"]
    counted = ", ".join(f"{name} {outcomes[name]}" for name in OUTCOMES)
    production = summary["production"]
    lines = [
        f"period                {period['since']} .. {period['until']} ({period['days']:g} days)",
        f"attempts              {summary['attempts']} ({counted})",
        f"deployments per day   {_number(summary['deployments_per_day'])}"
        f" ({summary['deployments']} deployments, {summary['rollbacks']} rollbacks)",
        f"success rate          {percent(summary['success_rate'])}",
        f"lead time             median {duration(summary['lead_time_median_s'])}, "
        f"p90 {duration(summary['lead_time_p90_s'])} ({summary['lead_time_count']} promotions,"
        f" from {summary['lead_time_from'] or '-'} commit)",
        f"change failure rate   {percent(summary['change_failure_rate'])}"
        f" ({summary['changes_failed']} changes failed)",
        f"time to restore       median {duration(summary['time_to_restore_median_s'])}"
        f" ({summary['incidents']} incidents, {summary['open_incidents']} open)",
    ]
    if production:
        lines.append(
            f"production now        {_short(production['candidate'])} since {production['since']}"
            f" (source {_short(production['source_commit'])},"
            f" build {production['build_id'] or '-'})"
        )
    else:
        lines.append("production now        nothing promoted yet")
    return lines


def render_table(attempts: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    header = ("TIME (UTC)", "COMMIT", "SOURCE", "BUILD", "OUTCOME", "ROLLBACK", "TO PROD", "IMAGES")
    table: list[tuple[str, ...]] = [header]
    for row in attempts:
        rollback = "target" if row["rollback_target"] else ""
        if row["rolled_back"]:
            rollback = f"{rollback}+from" if rollback else "from"
        table.append(
            (
                row["time"].replace("T", " ").removesuffix("Z"),
                row["commit"][:12],
                _short(row["source_commit"]),
                _short(row["build_id"], 20),
                row["outcome"],
                rollback or "-",
                duration(row["candidate_to_production_s"]),
                " ".join(row["images"]) or "-",
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r[:-1], widths, strict=True))
        + "  "
        + r[-1]
        for r in table
    ]
    return "\n".join([*lines, "", *summary_lines(summary)]) + "\n"


def render_json(attempts: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """``{"attempts": [...], "summary": {...}}``, one attempt per line.

    (``indent=`` runs json's pure-Python encoder: 4x slower on 10,000 rows.)
    """
    rows = ",\n    ".join(json.dumps(a) for a in attempts)
    body = f"[\n    {rows}\n  ]" if attempts else "[]"
    summary_text = json.dumps(summary, indent=2).replace("\n", "\n  ")
    return f'{{\n  "attempts": {body},\n  "summary": {summary_text}\n}}\n'


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


# --------------------------------------------------------------------------- chains


def release_of_entry(entry: LogEntry) -> str | None:
    """The candidate commit an environment's commit carries (promote's ``Release``)."""
    value = last_value(tool_trailers(entry.message), "Release")
    return value.strip().lower() if value else None


def environment_rows(
    candidates: Sequence[Candidate],
    chain: Sequence[tuple[str, Sequence[LogEntry]]],
    notes: Mapping[str, str],
) -> list[tuple[str, list[AttemptRow], list[Deployment], set[str]]]:
    """Per environment: the attempts as it saw them, its deployments, the releases it got.

    Each environment's commits are mapped back to candidate commits (their
    ``Release`` trailer, else through the environment before: ``Promoted-From:
    staging@S`` and S's own release). The first environment's verdicts are the
    notes on candidate commits (its builds run for them); a later one's, the
    notes on the earlier environment's commits (its builds run for those).
    A release that never reached the environment before is left out of it.
    """
    out: list[tuple[str, list[AttemptRow], list[Deployment], set[str]]] = []
    previous: dict[str, str] | None = None  # earlier environment's commit -> release
    by_sha = {c.sha: c for c in candidates}
    for env, entries in chain:
        mapping: dict[str, str] = {}
        deployments: list[Deployment] = []
        for entry in entries:
            raw = deployment_of(entry)
            release = release_of_entry(entry) or (
                raw.promoted_from
                if previous is None
                else previous.get(raw.promoted_from or "", raw.promoted_from)
            )
            rollback = raw.rollback_from
            if rollback and previous is not None:
                rollback = previous.get(rollback, rollback)
            mapping[entry.sha] = release or ""
            deployments.append(replace(raw, promoted_from=release, rollback_from=rollback))
        if previous is None:
            seen = list(candidates)
        else:
            verdicts: dict[str, list[OutcomeNote]] = {}
            for commit, release in previous.items():
                verdicts.setdefault(release, []).extend(parse_note(notes.get(commit, "")))
            seen = [
                replace(by_sha[release], verdicts=tuple(verdicts.get(release, ())))
                for release in dict.fromkeys(previous.values())
                if release in by_sha
            ]
        rows = build_rows(seen, deployments)
        out.append((env, rows, deployments, {c.sha for c in seen}))
        previous = {sha: release for sha, release in mapping.items() if release}
    return out


def chain_attempts(
    candidates: Sequence[Candidate],
    per_env: Sequence[tuple[str, list[AttemptRow], list[Deployment], set[str]]],
) -> list[dict[str, Any]]:
    """One row per release (newest first): how far it went, environment by environment."""
    rows: list[dict[str, Any]] = []
    for candidate in sorted(candidates, key=lambda c: c.time, reverse=True):
        environments: dict[str, Any] = {}
        for env, env_rows, _, reached in per_env:
            row = next((r for r in env_rows if r.candidate.sha == candidate.sha), None)
            if candidate.sha not in reached or row is None:
                environments[env] = {"outcome": "not-reached"}
                continue
            environments[env] = {
                "outcome": row.outcome,
                "reason": row.verdict.reason,
                "promoted_at": iso(row.promoted_at) if row.promoted_at is not None else None,
                "commit": row.production_commit,
                "rolled_back": row.rolled_back,
                "rollback_target": row.rollback_target,
            }
        rows.append(
            {
                "commit": candidate.sha,
                "time": iso(candidate.time),
                "subject": candidate.subject,
                "source_commit": candidate.source_commit,
                "images": [short_image(i) for i in candidate.images],
                "environments": environments,
            }
        )
    return rows


def _chain_cell(cell: Mapping[str, Any]) -> str:
    outcome = str(cell["outcome"])
    text = outcome if outcome != "not-reached" else "-"
    if cell.get("promoted_at"):
        text += " " + str(cell["promoted_at"])[11:19]
    if cell.get("rolled_back"):
        text += ", rolled back"
    if cell.get("rollback_target"):
        text += ", rollback target"
    return text


def render_chain_table(
    chain: Sequence[str],
    releases: Sequence[Mapping[str, Any]],
    summaries: Mapping[str, Mapping[str, Any]],
) -> str:
    widths = [max(len(_chain_cell(r["environments"][env])) for r in releases) if releases else 0
              for env in chain]  # fmt: skip
    widths = [max(w, len(env), 10) for w, env in zip(widths, chain, strict=True)]
    header = f"{'RELEASE':<12}  {'TIME':<20}  " + "  ".join(
        f"{env.upper():<{w}}" for env, w in zip(chain, widths, strict=True)
    )
    lines = [header + "  SUBJECT"]
    for release in releases:
        cells = "  ".join(
            f"{_chain_cell(release['environments'][env]):<{w}}"
            for env, w in zip(chain, widths, strict=True)
        )
        lines.append(f"{release['commit'][:12]:<12}  {release['time']:<20}  {cells}  "
                     f"{release['subject'][:50]}")  # fmt: skip
    for env in chain:
        lines += ["", f"== {env}", *summary_lines(summaries[env])]
    return "\n".join(lines) + "\n"


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


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    now = time.time()
    config = config_from_args(args, Provenance.from_env(), now)
    if config.chain:
        return chain_history(config, now)
    return history(config, now)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
