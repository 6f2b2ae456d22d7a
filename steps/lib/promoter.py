"""promote's work: find the candidate commit, decide on production's current tip,
commit and push (retrying on a new tip); ``--require-live`` reads the live record.

The decisions are ``steps.lib.promotion``'s (pure); this module fetches (deepening
a shallow fetch until the commits it needs show up) and writes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from steps.lib.errors import CheckFailed, UsageError
from steps.lib.git_env import git_credentials
from steps.lib.git_retry import Attempt, push_with_retry, with_retries
from steps.lib.git_trees import diff_states
from steps.lib.gitrepo import Workspace
from steps.lib.kube_access import connect
from steps.lib.live_record import LiveRecord, read_live_record
from steps.lib.output import say
from steps.lib.promotion import (
    STEP,
    Config,
    Upstream,
    chain_refusal,
    live_verdict,
    promote_message,
    promoted_from,
    promotion_kind,
    same_commit,
    span,
    utc,
)

FIRST_DEPTH = 64
"""Commits of --from fetched first; doubled until the commit shows up."""
LIVE_SEARCH_LIMIT = 4096
"""How far back to look for the candidate commit production reflects."""


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
