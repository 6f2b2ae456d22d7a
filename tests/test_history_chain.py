"""gitops-history --chain: how far each release went, and the figures per environment.

The env repo is made by the real stages (push-candidate, promote along the
chain, verdict notes as verify-rollout writes them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_promote import Env
from test_promote_chain import release, to_production, to_staging

from steps.history import main as history
from steps.lib.deploy_notes import record_outcome

HOUR = 3600


@pytest.fixture
def env(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Env:
    return Env(str(bare_repo), tmp_path, monkeypatch)


def story(env: Env) -> dict[str, str]:
    """Release 1 goes all the way; release 2 too; release 3 fails on staging;
    production is rolled back to release 1 (re-run for staging's release 1 commit)."""
    start = int(time.time()) - 5 * HOUR
    one = release(env, 1)
    staged_one = to_staging(env, one, start)
    assert to_production(env, staged_one)[0] == 0
    two = release(env, 2)
    staged_two = to_staging(env, two, start + HOUR)
    assert to_production(env, staged_two)[0] == 0
    three = release(env, 3)
    record_outcome(env.repo, three, "failed", "CrashLoopBackOff", "staging-build-3")
    code, result = to_production(env, staged_one)  # the rollback by re-run
    assert (code, result["kind"]) == (0, "rollback")
    return {"one": one, "two": two, "three": three}


def run_history(env: Env, *args: str) -> str:
    out = env.work / "history.out"
    args_ = ["--repo", env.repo, "--path", "hello", "--chain", "staging", "production"]
    assert history([*args_, "--output", str(out), *args]) == 0
    return out.read_text()


def test_each_release_says_how_far_it_went(env: Env) -> None:
    commits = story(env)
    data = json.loads(run_history(env, "--format", "json"))
    assert data["chain"] == ["staging", "production"]
    by_commit = {r["commit"]: r["environments"] for r in data["releases"]}
    assert [r["commit"] for r in data["releases"]] == [
        commits["three"], commits["two"], commits["one"]
    ]  # fmt: skip
    one, two, three = (by_commit[commits[k]] for k in ("one", "two", "three"))
    assert one["staging"]["outcome"] == "promoted"
    assert one["production"]["outcome"] == "promoted"
    assert one["production"]["rollback_target"] is True
    assert two["production"]["outcome"] == "promoted"
    assert two["production"]["rolled_back"] is True  # production was rolled back from it
    assert two["staging"]["rolled_back"] is False  # ...on production only
    assert three["staging"]["outcome"] == "failed"
    assert three["production"] == {"outcome": "not-reached"}
    staging, production = (data["environments"][e] for e in ("staging", "production"))
    # staging: two promotions, no rollback; release 3 failed:
    # change failure rate = 1 failed / (2 promoted + 1 failed)
    assert (staging["deployments"], staging["rollbacks"]) == (2, 0)
    assert staging["change_failure_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # production: three commits (two promotions and the rollback), one rollback;
    # release 2 was promoted then rolled back: 1 bad of 2 promoted
    assert (production["deployments"], production["rollbacks"]) == (3, 1)
    assert production["change_failure_rate"] == pytest.approx(1 / 2, abs=1e-4)
    assert production["production"]["candidate"] == commits["one"]


def test_the_table_and_the_page_show_the_chain(env: Env) -> None:
    commits = story(env)
    table = run_history(env)
    header, *rows = table.splitlines()
    assert header.split()[:4] == ["RELEASE", "TIME", "STAGING", "PRODUCTION"]
    line_three = next(r for r in rows if r.startswith(commits["three"][:12]))
    assert "failed" in line_three and line_three.split()[3] == "-"
    assert "rolled back" in next(r for r in rows if r.startswith(commits["two"][:12]))
    assert "== staging" in table and "== production" in table
    page = run_history(env, "--format", "html")
    chain = page.split('<table id="chain">')[1].split("</table>")[0]
    assert chain.count("<tr>") == 4  # the header and one row per release
    assert "<th>staging</th><th>production</th>" in chain
    assert 'id="figures-staging"' in page and 'id="figures-production"' in page
    staging_cards = page.split('id="figures-staging"', 1)[1].split("</section>", 1)[0]
    assert "Staging now" in staging_cards and "Production now" not in staging_cards


def test_the_chain_goes_without_to(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code = history(["--repo", env.repo, "--chain", "staging", "--to", "production"])
    assert code == 2
    assert "--to goes without it" in capsys.readouterr().err
