"""An env build overtaken by a newer candidate: stop it before it applies anything.

Triggered builds of one trigger run concurrently and start in any order: with
three candidates pushed at once, the build of the oldest may take the
environment's lock last, when the newest is already live. Applying it then
rolls the cluster back, and promote truthfully records a rollback nobody
asked for. A deliberate rollback (re-running an old env build) looks the same
to the cluster, and Cloud Build tells a step nothing that separates the two: a
retried build carries the original's substitutions with a new BUILD_ID, and a
trigger run with ``--sha`` looks like the push that first triggered it. So
verify-rollout decides, under the lock, from what the env repo and the
cluster already record. Its build was overtaken when

- the live commit is a newer commit of ``--from-branch`` than its own, and
- its commit was never attempted before (no verdict note: this is the first
  build of it, and a newer one went first), or the live record changed while
  it waited for the lock (a newer commit went live after it asked).

Then nothing is applied or recorded live, and the build ends ``superseded``
(exit 0; promote ``--require-live`` skips it too). Re-running the build of a
commit that was attempted before, with the same newer commit live as when it
started, is the deliberate rollback, and goes ahead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from steps.lib.errors import UsageError
from steps.lib.output import say

if TYPE_CHECKING:
    from steps.lib.kube import KubeApi
    from steps.lib.live_record import LiveRecord

FIRST_DEPTH = 64
"""Commits of --from-branch fetched first; doubled until both commits show up."""
SEARCH_LIMIT = 4096


class CandidateFacts(NamedTuple):
    """What the env repo says about this build's commit and the live one."""

    live_is_newer: bool
    attempted_before: bool


def overtaken_reason(
    commit: str, live_at_start: str | None, live_now: str, facts: CandidateFacts
) -> str | None:
    """Why this build must not apply ``commit`` over ``live_now``; None to go ahead (pure)."""
    from steps.lib.promotion import same_commit  # promote's rule; loaded only when asked

    if not facts.live_is_newer:
        return None
    if not facts.attempted_before:
        why = "its first build was overtaken"
    elif live_at_start is None or not same_commit(live_at_start, live_now):
        why = "it went live while this build waited for the lock"
    else:
        return None  # re-running an attempted build, as the user saw it: a rollback
    return (
        f"{live_now[:12]}, a newer candidate than {commit[:12]}, is live ({why}); "
        "nothing applied (superseded)"
    )


def candidate_facts(repo: str, branch: str, commit: str, live: str) -> CandidateFacts:
    """Fetch ``branch`` and the verdict notes of ``repo``: is ``live`` newer, was ``commit``
    attempted before. Errors as the git stages raise them (after retries)."""
    from steps.lib.deploy_notes import NOTES_BRANCH, NOTES_REF, NotesWorkspace, parse_note
    from steps.lib.git_env import git_credentials
    from steps.lib.git_inputs import parse_repo
    from steps.lib.git_retry import with_retries

    location = parse_repo(repo, "--notes")
    with git_credentials(location) as env, NotesWorkspace(location, env) as ws:

        def fetch() -> CandidateFacts:
            tip = ws.fetch_branch(branch, depth=FIRST_DEPTH)
            if tip is None:  # no such branch: nothing on it can be newer
                return CandidateFacts(live_is_newer=False, attempted_before=False)
            ours = ws.deepen_until(branch, tip, commit, FIRST_DEPTH, limit=SEARCH_LIMIT)
            theirs = ws.deepen_until(branch, tip, live, FIRST_DEPTH, limit=SEARCH_LIMIT)
            if not (ours and theirs and ours != theirs and ws.is_ancestor(ours, theirs)):
                return CandidateFacts(live_is_newer=False, attempted_before=False)
            notes_tip = ws.fetch_branch(NOTES_BRANCH)  # only now: the usual path skips it
            attempted = False
            if notes_tip is not None:
                ws.check("update-ref", NOTES_REF, notes_tip)
                attempted = bool(parse_note(ws.note_of(ours)))
            return CandidateFacts(live_is_newer=True, attempted_before=attempted)

        return with_retries(fetch, f"fetch {location.url} {branch}", "verify-rollout")


class Build(Protocol):
    """What the check needs of verify-rollout's configuration."""

    @property
    def record(self) -> str | None: ...
    @property
    def commit(self) -> str | None: ...
    @property
    def notes(self) -> str | None: ...
    @property
    def from_branch(self) -> str | None: ...


def from_branch(args: Any, record: str | None) -> str | None:
    """--from-branch, checked; None when not given."""
    if not args.from_branch:
        return None
    if not (args.notes and record and args.lock):
        raise UsageError("--from-branch needs --notes, --record and --lock")
    from steps.lib.git_inputs import validate_branch

    return validate_branch(args.from_branch, "--from-branch")


def live_record_if(wanted: object, api: KubeApi, namespace: str, build: Build) -> LiveRecord | None:
    """The live record (``build.record``) when ``wanted``; read before waiting for the lock."""
    from steps.lib.live_record import read_live_record

    return read_live_record(api, namespace, build.record) if wanted and build.record else None


def superseded_result(
    api: KubeApi, namespace: str, build: Build, live_at_start: LiveRecord | None
) -> dict[str, Any] | None:
    """Under the lock: the result of a build a newer live commit overtook; None to go ahead."""
    from steps.lib.promotion import same_commit

    if not (build.from_branch and build.notes and build.commit):
        return None
    live_now = live_record_if(True, api, namespace, build)
    if live_now is None or same_commit(build.commit, live_now.commit):
        return None
    facts = candidate_facts(build.notes, build.from_branch, build.commit, live_now.commit)
    before = live_at_start.commit if live_at_start is not None else None
    reason = overtaken_reason(build.commit, before, live_now.commit, facts)
    if reason is None:
        return None
    say(reason)
    return {"status": "superseded", "live": live_now.commit, "message": reason}
