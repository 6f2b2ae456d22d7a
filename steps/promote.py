"""gitops-promote: make production's SUBDIR what it was at one candidate commit.

The flow: flags -> config -> find the commit on --from (deepening a shallow
fetch until it shows up) -> on production's current tip, decide promote,
rollback or unchanged -> commit with trailers -> push, retrying on a new tip.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from steps.lib.cli import (
    Provenance,
    StepParser,
    StepRun,
    add_common_options,
    parse_duration,
    run_step,
    settle_imports,
    version_text,
)
from steps.lib.errors import CheckFailed, UsageError
from steps.lib.git_env import git_credentials
from steps.lib.git_inputs import (
    DEFAULT_COMMITTER,
    Identity,
    RepoLocation,
    parse_identity,
    parse_repo,
    validate_branch,
    validate_subpath,
)
from steps.lib.git_messages import format_message, tool_trailers, trailer_values
from steps.lib.git_retry import (
    CONTENTION_BUDGET,
    DEFAULT_MAX_ATTEMPTS,
    Attempt,
    push_with_retry,
    with_retries,
)
from steps.lib.git_trees import diff_states
from steps.lib.gitrepo import Workspace
from steps.lib.kube_access import Access, access_from_args, add_access_options, connect
from steps.lib.live_record import LiveRecord, check_record_name, read_live_record
from steps.lib.output import say

STEP = "promote"
FIRST_DEPTH = 64
"""Commits of --from fetched first; doubled until the commit shows up."""
LIVE_SEARCH_LIMIT = 4096
"""How far back to look for the candidate commit production reflects."""
CARRIED_TRAILERS = ("Source-Repo", "Source-Commit", "Image")

DESCRIPTION = """\
Make SUBDIR of --to identical to SUBDIR at candidate commit --commit, and
record it as a promotion (or a rollback, when that commit is older than the
one production reflects now).

example:
  gitops-promote --repo https://github.com/o/env --commit $COMMIT_SHA --path web

With --require-live NAME, promote first reads the live record that
`gitops-verify-rollout --record NAME` wrote in the cluster: if a newer
candidate commit is live, the promotion is skipped (exit 0, "superseded"), and
if the commit is not live at all it is refused (exit 1), so production never
records something that is not running.

environment:
  GIT_TOKEN, GIT_USERNAME      HTTPS token (user defaults to x-access-token)
  GIT_SSH_KEY, GIT_KNOWN_HOSTS SSH private key and known_hosts lines
  COMMIT_SHA, BUILD_ID         Cloud Build built-ins (--commit defaults to COMMIT_SHA)
"""

_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")


@dataclass(frozen=True)
class Config:
    location: RepoLocation
    commit: str
    source_branch: str
    target_branch: str
    subdir: str
    max_attempts: int
    committer: Identity
    provenance: Provenance
    require_live: str | None = None
    namespace: str | None = None
    access: Access | None = None
    require_promoted: bool = False
    min_soak: float = 0.0
    check_only: bool = False


def build_parser() -> StepParser:
    parser = StepParser("gitops-promote", DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_option("--repo", required=True, metavar="URL", help="env repo URL or local path")
    parser.add_option(
        "--commit", metavar="SHA", help="candidate commit to promote (default: $COMMIT_SHA)"
    )
    parser.add_option(
        "--from",
        dest="source_branch",
        metavar="BRANCH",
        help="branch the commit is on (default: candidate)",
    )
    parser.add_option(
        "--to", dest="target_branch", metavar="BRANCH", help="branch to write (default: production)"
    )
    parser.add_option("--path", metavar="SUBDIR", help="subdirectory to promote (default: root)")
    parser.add_option(
        "--max-attempts",
        type=int,
        metavar="N",
        help="failed push attempts (network, server) before giving up; pushes that lose "
        f"the race to other writers are retried for up to {CONTENTION_BUDGET:g} s "
        f"(default: {DEFAULT_MAX_ATTEMPTS})",
    )
    parser.add_option(
        "--committer",
        metavar="'NAME <EMAIL>'",
        help=f"bot identity committing, never root (default: {DEFAULT_COMMITTER})",
    )
    parser.add_option(
        "--require-live",
        metavar="NAME",
        help="promote only if the live record NAME (verify-rollout --record) names this commit",
    )
    parser.add_option(
        "--namespace",
        metavar="NS",
        help="namespace of the live record (default: the kubeconfig context's)",
    )
    parser.add_option(
        "--require-promoted",
        action="store_true",
        help="--from is an earlier environment: the commit must be a promotion recorded there",
    )
    parser.add_option(
        "--min-soak",
        metavar="DURATION",
        help="with --require-promoted: time it must have been live on --from (e.g. 1h)",
    )
    parser.add_option(
        "--check-only",
        action="store_true",
        help="only check --require-promoted and --min-soak (before applying); write nothing",
    )
    add_access_options(parser)
    add_common_options(parser)
    return parser


def config_from_args(args: Any, provenance: Provenance) -> Config:
    commit = args.commit or provenance.commit_sha
    if not commit:
        raise UsageError("--commit is required (or set GITOPS_COMMIT or COMMIT_SHA)")
    if not _SHA.match(commit):
        raise UsageError(f"--commit {commit!r}: expected a commit SHA (7 to 64 hex digits)")
    source = validate_branch(args.source_branch or "candidate", "--from")
    target = validate_branch(args.target_branch or "production", "--to")
    if source == target:
        raise UsageError("--from and --to must be different branches")
    min_soak = parse_duration(args.min_soak, "--min-soak") if args.min_soak else 0.0
    if min_soak and not args.require_promoted:
        raise UsageError("--min-soak needs --require-promoted (soaking is on an environment)")
    if args.check_only and not args.require_promoted:
        raise UsageError("--check-only checks --require-promoted; give it")
    if args.check_only and args.require_live:
        raise UsageError("--check-only runs before the rollout: --require-live goes with promote")
    max_attempts = DEFAULT_MAX_ATTEMPTS if args.max_attempts is None else args.max_attempts
    if max_attempts < 1:
        raise UsageError("--max-attempts must be at least 1")
    return Config(
        location=parse_repo(args.repo),
        commit=commit.lower(),
        source_branch=source,
        target_branch=target,
        subdir=validate_subpath(args.path),
        max_attempts=max_attempts,
        committer=parse_identity(
            args.committer or DEFAULT_COMMITTER, "--committer", allow_root=False
        ),
        provenance=provenance,
        require_live=check_record_name(args.require_live, "--require-live")
        if args.require_live
        else None,
        namespace=args.namespace,
        access=access_from_args(args) if args.require_live else None,
        require_promoted=bool(args.require_promoted),
        min_soak=min_soak,
        check_only=bool(args.check_only),
    )


# --------------------------------------------------------------------------- pure decisions


def same_commit(a: str, b: str) -> bool:
    """Two SHAs name the same commit when one is a prefix of the other."""
    a, b = a.lower(), b.lower()
    return a.startswith(b) or b.startswith(a)


def live_verdict(commit: str, live: str | None, live_is_newer: bool) -> str:
    """``live`` (promote), ``superseded`` (skip, exit 0) or ``not-live`` (exit 1)."""
    if live is None:
        return "not-live"
    if same_commit(commit, live):
        return "live"
    return "superseded" if live_is_newer else "not-live"


def promoted_from(message: str) -> str | None:
    """The candidate SHA in a message's last ``Promoted-From: branch@sha`` trailer."""
    values = trailer_values(tool_trailers(message), "Promoted-From")
    if not values:
        return None
    sha = values[-1].rpartition("@")[2].strip()
    return sha.lower() if _SHA.match(sha) else None


def release_of(message: str) -> str | None:
    """The candidate commit a promotion carries on down the chain (``Release``)."""
    values = trailer_values(tool_trailers(message), "Release")
    if values and _SHA.match(values[-1].strip()):
        return values[-1].strip().lower()
    return promoted_from(message)


def promotion_kind(commit: str, live: str | None, live_is_descendant: bool) -> str:
    """``rollback`` when ``commit`` is an older candidate than the live one."""
    if live and live != commit and live_is_descendant:
        return "rollback"
    return "promote"


def promote_message(
    config: Config,
    commit: str,
    candidate_message: str,
    kind: str,
    live: str | None,
    changes: Sequence[Any],
) -> str:
    subject_of_candidate = candidate_message.strip().splitlines()[0] if candidate_message else ""
    verb = "Rollback to" if kind == "rollback" else "Promote"
    subject = f"{verb} {commit[:12]}: {subject_of_candidate}"
    where = config.subdir or "/"
    body = [f"{config.target_branch}:{where} := {config.source_branch}@{commit}:{where}"]
    if kind == "rollback" and live:
        body.append(f"Rolls back {config.source_branch}@{live}.")
    body += [f"  {c.kind} {c.path}" for c in changes[:30]]
    if len(changes) > 30:
        body.append(f"  ... and {len(changes) - 30} more")
    trailers = [
        ("Promoted-From", f"{config.source_branch}@{commit}"),
        ("Release", release_of(candidate_message) or commit),
    ]
    if kind == "rollback" and live:
        trailers.append(("Rollback-From", live))
    trailers.append(("Build-Id", config.provenance.build_id or ""))
    carried = tool_trailers(candidate_message)
    for key in CARRIED_TRAILERS:
        trailers += [(key, value) for value in trailer_values(carried, key)]
    return format_message(subject, "\n".join(body), trailers, STEP)


@dataclass(frozen=True)
class Upstream:
    """The commit on the earlier environment's branch, and what came after it there."""

    environment: str
    commit: str
    message: str
    promoted_at: int
    next_commit: str | None = None
    next_message: str = ""
    next_at: int | None = None


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def span(seconds: float) -> str:
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
        or "0s"
    )


def chain_refusal(upstream: Upstream, target: str, min_soak: float, now: float) -> str | None:
    """Why ``upstream.commit`` may not go on to ``target`` yet; None when it may.

    Healthy on the earlier environment means: gitops-promote recorded it
    there (which, in the env build, happens only after verify-rollout saw it
    roll out and --require-live saw it live), and for ``min_soak`` after that
    nothing replaced it there, a rollback least of all. The times are the
    promotion commits' committer times on that environment's branch.
    """
    env, short = upstream.environment, upstream.commit[:12]
    if promoted_from(upstream.message) is None:
        return (
            f"{short} on {env} is not a promotion recorded by gitops-promote: promote a "
            f"candidate to {env} first (run {env}'s env build for it); not promoting to {target}"
        )
    if trailer_values(tool_trailers(upstream.message), "Rollback-From"):
        return (
            f"{short} is a rollback on {env}; a rollback stays in its environment (re-run "
            f"{target}'s env build for the {env} commit you want there); not promoting to {target}"
        )
    if upstream.next_commit is not None and upstream.next_at is not None:
        lived = upstream.next_at - upstream.promoted_at
        replaced_by = upstream.next_commit[:12]
        if trailer_values(tool_trailers(upstream.next_message), "Rollback-From"):
            return (
                f"{short} was rolled back on {env} at {utc(upstream.next_at)} ({replaced_by}); "
                f"not promoting to {target}"
            )
        if lived < min_soak:
            return (
                f"{short} was live on {env} for only {span(lived)} (from "
                f"{utc(upstream.promoted_at)}, replaced by {replaced_by} at "
                f"{utc(upstream.next_at)}); {target} needs {span(min_soak)} of soak; "
                f"not promoting"
            )
        return None
    soaked = now - upstream.promoted_at
    if soaked < min_soak:
        allowed = upstream.promoted_at + min_soak
        return (
            f"{short} has been live on {env} for {span(soaked)} (since "
            f"{utc(upstream.promoted_at)}); {target} needs {span(min_soak)} of soak: allowed "
            f"from {utc(allowed)} (in {span(allowed - now)}); not promoting yet"
        )
    return None


# --------------------------------------------------------------------------- side effects


def read_upstream(ws: Workspace, config: Config, commit: str, source_tip: str) -> Upstream:
    """The commit's promotion on --from and the first later commit there touching --path."""
    later = ws.commits_between(config.source_branch, commit, source_tip, config.subdir) or []
    following = later[-1] if later else None  # git log lists newest first
    times = ws.commit_times([commit] + ([following[0]] if following else []))
    return Upstream(
        environment=config.source_branch,
        commit=commit,
        message=ws.message_of(commit),
        promoted_at=times[commit],
        next_commit=following[0] if following else None,
        next_message=following[1] if following else "",
        next_at=times[following[0]] if following else None,
    )


def was_promoted_before(ws: Workspace, config: Config, commit: str) -> bool:
    """Whether --to already recorded ``commit`` (a rollback target, then)."""
    tip = ws.fetch_branch(config.target_branch, depth=2)
    if tip is None:
        return False
    earlier = promotions(ws, config.target_branch, tip, config.subdir)
    return any(same_commit(commit, sha) for sha in earlier)


def check_chain(ws: Workspace, config: Config, commit: str | None, source_tip: str | None) -> None:
    """--require-promoted and --min-soak: CheckFailed (exit 1) naming what is missing."""
    if commit is None or source_tip is None:
        raise CheckFailed(
            f"--commit {config.commit[:12]}: not on {config.source_branch}: it was never "
            f"promoted to {config.source_branch} (run {config.source_branch}'s env build for "
            f"it first); not promoting to {config.target_branch}"
        )
    upstream = read_upstream(ws, config, commit, source_tip)
    if config.min_soak and was_promoted_before(ws, config, commit):
        # A rollback to what ran here before: it soaked then, whatever followed it.
        say(f"{STEP}: {commit[:12]} ran on {config.target_branch} before: no soak needed")
        upstream = replace(upstream, next_commit=None, next_at=None, promoted_at=0)
    refusal = chain_refusal(upstream, config.target_branch, config.min_soak, time.time())
    if refusal is not None:
        raise CheckFailed(refusal)
    soak = f", {span(config.min_soak)} soak done" if config.min_soak else ""
    say(
        f"{STEP}: {commit[:12]} was promoted on {config.source_branch} at "
        f"{utc(upstream.promoted_at)}{soak}"
    )


def find_on_branch(ws: Workspace, branch: str, sha: str) -> str | None:
    """Fetch ``branch`` deep enough to contain ``sha``; its full SHA, or None."""
    tip = ws.fetch_branch(branch, depth=FIRST_DEPTH)
    if tip is None:
        return None
    return ws.deepen_until(branch, tip, sha, FIRST_DEPTH, limit=None)


def promotions(ws: Workspace, branch: str, tip: str, subdir: str) -> Iterator[str]:
    """The candidate commits production held for ``subdir``, newest first.

    Reads ``Promoted-From`` trailers down the path's history, deepening the
    shallow fetch (doubling) as the walk reaches its boundary.
    """
    depth, seen = 2, 0
    while True:
        boundary = ws.shallow_commits()
        history = ws.history(tip, subdir)
        for index, (sha, message) in enumerate(history):
            if sha in boundary:
                break  # cannot tell whether it touched subdir: look deeper
            if index < seen:
                continue
            seen = index + 1
            found = promoted_from(message)
            if found:
                yield found
        if not ws.is_shallow() or depth >= LIVE_SEARCH_LIMIT:
            return
        ws.fetch_branch(branch, deepen=depth)
        depth *= 2


def live_candidate(ws: Workspace, branch: str, tip: str, subdir: str) -> str | None:
    """The candidate commit production reflects for ``subdir``: the latest trailer."""
    return next(promotions(ws, branch, tip, subdir), None)


class Promoter:
    def __init__(self, ws: Workspace, config: Config, commit: str, source_tip: str) -> None:
        self.ws = ws
        self.source_tip = source_tip
        self.config = config
        self.commit = commit
        self.desired = ws.read_state(commit, config.subdir)
        self.candidate_message = ws.message_of(commit)
        self.author = ws.author_of(commit)
        self.looked_up: dict[str, bool] = {}
        self.intended: str | None = None
        """The kind decided on the first attempt: what this build was asked to do."""

    def live_is_descendant(self, live: str, tip: str) -> bool:
        """Whether ``live`` came after our commit (fetching if need be).

        On --from: ``live`` descends from our commit. When --from was
        force-pushed and ``live`` is no longer on it, production's own record
        decides: our commit was promoted to this path before ``live`` was.
        """
        if live not in self.looked_up:
            found = self.ws.deepen_until(
                self.config.source_branch,
                self.source_tip,
                live,
                FIRST_DEPTH,
                limit=LIVE_SEARCH_LIMIT,
            )
            if found:
                self.looked_up[live] = self.ws.is_ancestor(self.commit, live)
            else:
                earlier = promotions(self.ws, self.config.target_branch, tip, self.config.subdir)
                self.looked_up[live] = any(same_commit(self.commit, sha) for sha in earlier)
        return self.looked_up[live]

    def prepare(self, attempt: int) -> Attempt:
        config, ws = self.config, self.ws
        if config.require_live and attempt > 1:
            # Checked again on every retry: the cluster may have moved on
            # meanwhile, to a candidate pushed after we first fetched --from.
            record = read_live(config)
            source_tip = self.source_tip
            if ws.resolve_commit(record.commit) is None:
                source_tip = ws.fetch_branch(config.source_branch, depth=FIRST_DEPTH) or source_tip
            skipped = check_live(ws, config, self.commit, source_tip, record)
            if skipped is not None:
                skipped.pop("status")
                return Attempt(None, None, skipped, outcome="superseded")
        tip = ws.fetch_branch(config.target_branch, depth=2)
        current = ws.read_state(tip, config.subdir)
        changes = diff_states(current, self.desired)
        live = live_candidate(ws, config.target_branch, tip, config.subdir) if tip else None
        descendant = bool(live and tip) and self.live_is_descendant(live or "", tip or "")
        kind = promotion_kind(self.commit, live, descendant)
        details: dict[str, Any] = {
            "kind": kind,
            "live_before": live,
            "parent": tip,
            "changes": [c.as_dict() for c in changes],
        }
        if self.intended is None:
            self.intended = kind
        elif kind == "rollback" and self.intended == "promote" and changes:
            # A newer candidate landed on production while we retried: going
            # on would roll it back, which nobody asked this build to do.
            say(
                f"{STEP}: {(live or '')[:12]}, a newer candidate than {self.commit[:12]}, "
                f"was promoted meanwhile; not promoting (superseded)"
            )
            details.update(kind="none", status="superseded", live=live)
            return Attempt(None, tip, details, outcome="superseded")
        if tip is not None and not changes:
            where = f"{config.target_branch}:{config.subdir or '/'}"
            say(f"{STEP}: {where} already matches {self.commit[:12]}; nothing to do")
            details["kind"] = "none"
            return Attempt(None, tip, details)
        if tip is None:
            say(f"{STEP}: {config.target_branch} does not exist yet; creating it")
        tree = ws.write_tree(tip, config.subdir, current, self.desired)
        message = promote_message(config, self.commit, self.candidate_message, kind, live, changes)
        new = ws.commit_tree(tree, tip, message, self.author, config.committer)
        say(f"{STEP}: {message.splitlines()[0]} ({len(changes)} file(s))")
        return Attempt(new, tip, details)


def read_live(config: Config) -> LiveRecord:
    """The live record --require-live names, read from the cluster."""
    assert config.require_live is not None and config.access is not None
    api = connect(config.access)
    namespace = config.namespace or api.default_namespace
    record = read_live_record(api, namespace, config.require_live)
    if record is None:
        raise CheckFailed(
            f"--require-live {config.require_live}: no live record in namespace {namespace} "
            f"of {config.access.describe()}; nothing verified this commit as running"
        )
    say(
        f"{STEP}: live record {config.require_live}: {record.commit[:12]} (build {record.build_id})"
    )
    return record


def check_live(
    ws: Workspace, config: Config, commit: str, source_tip: str, record: LiveRecord
) -> dict[str, Any] | None:
    """None to go on promoting; else the result of a skipped promotion."""
    live = record.commit
    newer = False
    if not same_commit(commit, live):
        found = ws.deepen_until(
            config.source_branch, source_tip, live, FIRST_DEPTH, limit=LIVE_SEARCH_LIMIT
        )
        newer = found is not None and ws.is_ancestor(commit, found)
    verdict = live_verdict(commit, live, newer)
    if verdict == "live":
        return None
    if verdict == "superseded":
        say(
            f"{STEP}: {live[:12]}, a newer candidate than {commit[:12]}, is live; "
            "not promoting (superseded)"
        )
        return {
            "status": "superseded",
            "repo": config.location.url,
            "from": f"{config.source_branch}@{commit}",
            "branch": config.target_branch,
            "path": config.subdir,
            "live": live,
        }
    raise CheckFailed(
        f"--require-live {config.require_live}: {commit[:12]} is not what runs "
        f"({live[:12]} is live, and it is not a newer candidate); not promoting"
    )


def promote(config: Config) -> dict[str, Any]:
    live_record = read_live(config) if config.require_live else None
    say(
        f"{STEP}: {config.location.url} {config.source_branch}@{config.commit[:12]} -> "
        f"{config.target_branch}:{config.subdir or '/'}"
    )
    with git_credentials(config.location) as env, Workspace(config.location, env) as ws:
        commit = with_retries(
            lambda: find_on_branch(ws, config.source_branch, config.commit),
            f"fetch {config.location.url} {config.source_branch}",
            STEP,
        )
        if config.require_promoted:
            tip = ws.resolve_commit(f"refs/remotes/origin/{config.source_branch}")
            check_chain(ws, config, commit, tip)
            if config.check_only:
                return {
                    "status": "allowed",
                    "from": f"{config.source_branch}@{commit}",
                    "branch": config.target_branch,
                }
        if commit is None:
            raise UsageError(
                f"--commit {config.commit}: not on branch {config.source_branch} of "
                f"{config.location.url}"
            )
        source_tip = ws.resolve_commit(f"refs/remotes/origin/{config.source_branch}")
        assert source_tip is not None
        if live_record is not None:
            verdict = check_live(ws, config, commit, source_tip, live_record)
            if verdict is not None:
                return verdict
        promoter = Promoter(ws, config, commit, source_tip)
        if not promoter.desired:
            raise UsageError(
                f"--path {config.subdir or '/'}: nothing there at {config.source_branch}@"
                f"{commit[:12]}; refusing to promote an empty directory"
            )
        report = push_with_retry(
            ws, config.target_branch, promoter.prepare, max_attempts=config.max_attempts
        )
    prepared = report.attempt
    pushed = report.status == "pushed"
    result: dict[str, Any] = {
        "status": report.status,
        "repo": config.location.url,
        "from": f"{config.source_branch}@{commit}",
        "branch": config.target_branch,
        "path": config.subdir,
        "commit": report.landed or (prepared.commit if pushed else prepared.parent),
        "attempts": report.attempts,
        **prepared.details,
    }
    if pushed:
        say(f"{STEP}: pushed {result['commit']} to {config.target_branch}")
    return result


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    return promote(config_from_args(args, Provenance.from_env(os.environ)))


def main(argv: Sequence[str] | None = None) -> int:
    settle_imports(argv)
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
