"""gitops-promote along a chain of environments: candidate -> staging -> production.

Real repositories, the real stages. Times are the promotion commits' own
committer times (set through GIT_COMMITTER_DATE), never a clock in the test.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fixtures_git import files_at, git, log
from test_promote import Env

from steps.lib.git_messages import parse_trailers

MANIFESTS = {
    "staging/manifests.yaml": "kind: Deployment # staging\n",
    "production/manifests.yaml": "kind: Deployment # production\n",
}
HOUR = 3600


@pytest.fixture
def env(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Env:
    return Env(str(bare_repo), tmp_path, monkeypatch)


def release(env: Env, n: int) -> str:
    """A candidate commit holding both environments' rendered manifests."""
    return env.candidate("hello", {k: f"{v}# release {n}\n" for k, v in MANIFESTS.items()})


def to_staging(env: Env, candidate: str, at: float) -> str:
    """Staging's env build promoting ``candidate``, as if at epoch ``at``."""
    env.monkeypatch.setenv("GIT_COMMITTER_DATE", f"@{int(at)} +0000")
    code, result = env.promote(candidate, "--to", "staging", "--path", "hello")
    env.monkeypatch.delenv("GIT_COMMITTER_DATE")
    assert code == 0, result
    return str(result["commit"])


def to_production(env: Env, staging_commit: str, *args: str) -> tuple[int, dict[str, object]]:
    return env.promote(
        staging_commit,
        "--from", "staging", "--to", "production", "--path", "hello/production",
        "--require-promoted", *args,
    )  # fmt: skip


def test_a_release_soaked_on_staging_reaches_production_with_its_release_named(env: Env) -> None:
    candidate = release(env, 1)
    staged = to_staging(env, candidate, time.time() - 2 * HOUR)
    code, result = to_production(env, staged, "--min-soak", "1h")
    assert code == 0, result
    assert result["kind"] == "promote"
    # Only production's own manifests go to production.
    assert files_at(Path(env.repo), "production") == {
        "hello/production/manifests.yaml": "kind: Deployment # production\n# release 1\n"
    }
    trailers = dict(parse_trailers(log(Path(env.repo), "production", "%B")[0]))
    assert trailers["Promoted-From"] == f"staging@{staged}"
    assert trailers["Release"] == candidate  # the candidate commit, across the chain


def test_a_commit_never_promoted_on_staging_is_refused_naming_the_missing_step(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    to_staging(env, release(env, 1), time.time())
    skipped = release(env, 2)  # a candidate, never promoted to staging
    code, _ = to_production(env, skipped)
    assert code == 1
    err = capsys.readouterr().err
    assert "never promoted to staging (run staging's env build for it first)" in err
    assert not _has(env, "production")


def test_a_commit_pushed_to_staging_by_hand_is_not_a_promotion(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    to_staging(env, release(env, 1), time.time() - 2 * HOUR)
    work = env.work / "hand"
    git("clone", "-q", "--branch", "staging", env.repo, str(work))
    (work / "hello" / "production" / "manifests.yaml").write_text("kind: Deployment # by hand\n")
    git("-C", str(work), "commit", "-qam", "hotfix straight to staging")
    git("-C", str(work), "push", "-q", "origin", "staging")
    by_hand = git("-C", str(work), "rev-parse", "HEAD").strip()
    code, _ = to_production(env, by_hand)
    assert code == 1
    assert "is not a promotion recorded by gitops-promote" in capsys.readouterr().err
    assert not _has(env, "production")


def test_too_short_a_soak_is_refused_saying_when_it_will_be_allowed(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    promoted_at = int(time.time()) - 600  # ten minutes ago
    staged = to_staging(env, release(env, 1), promoted_at)
    for extra in ((), ("--check-only",)):
        code, _ = to_production(env, staged, "--min-soak", "1h", *extra)
        assert code == 1
        err = capsys.readouterr().err
        allowed = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(promoted_at + HOUR))
        assert f"production needs 1h of soak: allowed from {allowed}" in err
    assert not _has(env, "production")


def test_check_only_allows_without_writing(env: Env) -> None:
    staged = to_staging(env, release(env, 1), time.time() - 2 * HOUR)
    code, result = to_production(env, staged, "--min-soak", "1h", "--check-only")
    assert (code, result["status"]) == (0, "allowed")
    assert not _has(env, "production")


def test_a_release_replaced_on_staging_before_its_soak_ended_never_soaked(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    start = int(time.time()) - 3 * HOUR
    first = to_staging(env, release(env, 1), start)
    to_staging(env, release(env, 2), start + 600)  # replaced ten minutes later
    code, _ = to_production(env, first, "--min-soak", "1h")
    assert code == 1
    assert "was live on staging for only 10m" in capsys.readouterr().err


def test_rollbacks_stay_in_their_environment(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    start = int(time.time()) - 5 * HOUR
    one = release(env, 1)
    to_staging(env, one, start)
    two = release(env, 2)
    staged_two = to_staging(env, two, start + 2 * HOUR)
    rolled_back = to_staging(env, one, start + 3 * HOUR)  # staging rolled back to release 1
    trailers = dict(parse_trailers(log(Path(env.repo), "staging", "%B")[0]))
    assert trailers["Rollback-From"] == two
    # Staging's rollback commit does not roll production back...
    code, _ = to_production(env, rolled_back)
    assert code == 1
    assert "is a rollback on staging; a rollback stays in its environment" in (
        capsys.readouterr().err
    )
    # ...and the release staging rolled back from never goes on.
    code, _ = to_production(env, staged_two, "--min-soak", "30m")
    assert code == 1
    assert "was rolled back on staging at" in capsys.readouterr().err
    assert not _has(env, "production")


def test_a_rollback_to_what_production_ran_before_needs_no_new_soak(env: Env) -> None:
    start = int(time.time()) - 3 * HOUR
    first = to_staging(env, release(env, 1), start)
    assert to_production(env, first)[0] == 0
    second = to_staging(env, release(env, 2), start + 600)  # replaced after ten minutes
    assert to_production(env, second)[0] == 0
    # Production's build re-run for release 1's staging commit: the rollback.
    code, result = to_production(env, first, "--min-soak", "1h")
    assert (code, result["kind"]) == (0, "rollback")


def test_soak_needs_require_promoted(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = env.promote("a" * 40, "--from", "staging", "--min-soak", "1h")
    assert code == 2
    assert "--min-soak needs --require-promoted" in capsys.readouterr().err


def _has(env: Env, branch: str) -> bool:
    return bool(git("ls-remote", env.repo, f"refs/heads/{branch}").strip())
