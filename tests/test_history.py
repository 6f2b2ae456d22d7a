"""gitops-history on histories written by the real stages, every outcome and figure checked.

The story (path ``web``; T is 2026-03-01T00:00:00Z, dates set through
GIT_COMMITTER_DATE so that every figure has an exact expected value):

    T+0h    A1 pushed         promoted at T+0h10m                      promoted
    T+1h    A2 pushed         verify-rollout: failed                   failed
    T+2h    A3 pushed         promoted at T+2h20m, rolled back to at T+6h  promoted
    T+3h    A4 pushed         verify-rollout: superseded               superseded
    T+4h    A5 pushed         no verdict, newer attempts exist         not-promoted
    T+5h    A6 pushed         promoted at T+5h30m, rolled back from    promoted
    T+6h    rollback to A3
    T+7h    A7 pushed         no verdict yet                           pending

(An ``api`` attempt at T-1h shows the path filter.)
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fixtures_git import GIT_PASSWORD, GIT_USER, git, log, run_cli, write_tree

from steps.history import main, parse_when
from steps.lib import git_retry
from steps.lib.deploy_notes import (
    NOTES_REF,
    NotesWorkspace,
    OutcomeNote,
    latest_verdict,
    merge_note,
    parse_note,
    record_outcome,
    verdict_of_rollout,
)
from steps.lib.git_failures import PushOutcome
from steps.lib.history_model import (
    Candidate,
    Deployment,
    build_rows,
    classify_attempt,
    incidents,
    nearest_rank,
    short_image,
    summarize,
    written_path,
)
from steps.lib.history_text import render_link
from steps.lib.timefmt import duration
from steps.promote import main as promote
from steps.push_candidate import main as push_candidate
from steps.sandbox.gitserver import GitServer

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def image(n: int) -> str:
    return "us-docker.pkg.dev/p/r/web@sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


class Story:
    """Writes an env repo's history through push-candidate, promote and record_outcome."""

    def __init__(self, repo: str, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.repo = repo
        self.work = work
        self.monkeypatch = monkeypatch
        self.count = 0
        self.app = work / "app"
        git("init", "--quiet", "--initial-branch=main", str(self.app))

    def clock(self, when: datetime) -> None:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
        self.monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
        self.monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)

    def source_commit(self, when: datetime) -> str:
        """A commit in the app repo, five minutes before ``when``."""
        stamp = (when - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S+0000")
        env = {"GIT_COMMITTER_DATE": stamp, "GIT_AUTHOR_DATE": stamp}
        git(
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            f"change {self.count}",
            cwd=self.app,
            env=env,
        )
        return git("rev-parse", "HEAD", cwd=self.app).strip()

    def attempt(self, when: datetime, path: str = "web") -> str:
        self.count += 1
        self.monkeypatch.setenv("COMMIT_SHA", self.source_commit(when))
        self.monkeypatch.setenv("REPO_NAME", "app")
        self.monkeypatch.setenv("BUILD_ID", f"app-build-{self.count}")
        self.clock(when)
        src = write_tree(
            self.work / f"src-{self.count}", {"deploy.yaml": f"image: {image(self.count)}\n"}
        )
        result = self.work / "push-candidate.json"
        args = ["--repo", self.repo, "--from", str(src), "--path", path]
        assert push_candidate([*args, "--result-file", str(result)]) == 0
        for name in ("COMMIT_SHA", "REPO_NAME", "BUILD_ID"):
            self.monkeypatch.delenv(name)
        commit: str = json.loads(result.read_text())["commit"]
        return commit

    def promote(self, sha: str, when: datetime, path: str = "web") -> None:
        self.clock(when)
        self.monkeypatch.setenv("BUILD_ID", f"env-build-{sha[:7]}")
        assert promote(["--repo", self.repo, "--commit", sha, "--path", path]) == 0
        self.monkeypatch.delenv("BUILD_ID")

    def verdict(self, sha: str, outcome: str, when: datetime, reason: str | None = None) -> None:
        self.clock(when)
        record_outcome(self.repo, sha, outcome, reason, f"env-build-{sha[:7]}", now=when)


@dataclass
class Built:
    repo: str
    story: Story
    shas: dict[str, str]


def build_story(repo: str, work: Path, monkeypatch: pytest.MonkeyPatch) -> Built:
    story = Story(repo, work, monkeypatch)
    shas: dict[str, str] = {}
    shas["api"] = story.attempt(at(-60), path="api")
    shas["A1"] = story.attempt(at(0))
    story.verdict(shas["A1"], "rolled-out", at(8))
    story.promote(shas["A1"], at(10))
    shas["A2"] = story.attempt(at(60))
    story.verdict(shas["A2"], "failed", at(65), "ProgressDeadline: web 1/3 updated")
    shas["A3"] = story.attempt(at(120))
    story.promote(shas["A3"], at(140))
    shas["A4"] = story.attempt(at(180))
    story.verdict(shas["A4"], "superseded", at(185), "Superseded: A5 came first")
    shas["A5"] = story.attempt(at(240))
    shas["A6"] = story.attempt(at(300))
    story.promote(shas["A6"], at(330))
    story.promote(shas["A3"], at(360))  # a rollback
    shas["A7"] = story.attempt(at(420))
    return Built(repo, story, shas)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """One story for the module (the stages take a few seconds to write it)."""
    work = tmp_path_factory.mktemp("history")
    home = work / "home"
    home.mkdir()
    saved = dict(os.environ)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for key in list(os.environ):
            if key.startswith(("GIT_", "GITOPS_", "BUILDER_")) or key in (
                "BUILD_ID", "COMMIT_SHA", "REPO_NAME", "SHORT_SHA", "BRANCH_NAME", "PROJECT_ID",
            ):  # fmt: skip
                monkeypatch.delenv(key)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")
        repo = work / "env.git"
        git("init", "--quiet", "--bare", "--initial-branch=main", str(repo))
        story = build_story(str(repo), work, monkeypatch)
        for name in ("GIT_COMMITTER_DATE", "GIT_AUTHOR_DATE"):
            monkeypatch.delenv(name, raising=False)
        yield story
    now = dict(os.environ)
    now.pop("PYTEST_CURRENT_TEST", None)
    saved.pop("PYTEST_CURRENT_TEST", None)
    assert now == saved


def history(built: Built, *args: str, tmp: Path) -> dict[str, Any]:
    out = tmp / "history.json"
    result = tmp / "result.json"
    code = main(
        [
            "--repo",
            built.repo,
            "--format",
            "json",
            "--output",
            str(out),
            "--result-file",
            str(result),
            *args,
        ]
    )
    assert code == 0, json.loads(result.read_text())
    data: dict[str, Any] = json.loads(out.read_text())
    data["result"] = json.loads(result.read_text())
    return data


UNTIL = ["--until", "2026-03-01T08:00:00Z"]


def by_name(built: Built, attempts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = {sha: name for name, sha in built.shas.items()}
    return {names[a["commit"]]: a for a in attempts}


def test_every_outcome(built: Built, tmp_path: Path) -> None:
    data = history(built, "--path", "web", *UNTIL, tmp=tmp_path)
    rows = by_name(built, data["attempts"])
    assert [a["commit"] for a in data["attempts"]] == [
        built.shas[n] for n in ("A7", "A6", "A5", "A4", "A3", "A2", "A1")
    ]
    assert {n: r["outcome"] for n, r in rows.items()} == {
        "A1": "promoted",
        "A2": "failed",
        "A3": "promoted",
        "A4": "superseded",
        "A5": "not-promoted",
        "A6": "promoted",
        "A7": "pending",
    }
    assert {n for n, r in rows.items() if r["rollback_target"]} == {"A3"}
    assert {n for n, r in rows.items() if r["rolled_back"]} == {"A6"}
    assert {n: r["candidate_to_production_s"] for n, r in rows.items()} == {
        "A1": 600, "A2": None, "A3": 1200, "A4": None, "A5": None, "A6": 1800, "A7": None,
    }  # fmt: skip
    a2 = rows["A2"]
    assert (a2["reason"], a2["detail"]) == ("RolloutFailed", "ProgressDeadline: web 1/3 updated")
    assert a2["verdict_build_id"] == f"env-build-{built.shas['A2'][:7]}"
    assert rows["A4"]["reason"] == "Superseded"
    assert (rows["A5"]["reason"], rows["A7"]["reason"]) == ("NeverPromoted", "AwaitingVerdict")
    a1 = rows["A1"]
    assert a1["time"] == "2026-03-01T00:00:00Z"
    assert a1["promoted_at"] == "2026-03-01T00:10:00Z"
    assert a1["images"] == [short_image(image(2))]
    assert (a1["build_id"], a1["source_repo"]) == ("app-build-2", "app")
    assert (
        a1["source_commit"] == git("rev-list", "--reverse", "main", cwd=built.story.app).split()[1]
    )
    assert a1["production_commit"] == log(Path(built.repo), "production")[-1]


def test_every_figure(built: Built, tmp_path: Path) -> None:
    data = history(built, "--path", "web", "--since", "2026-03-01T00:00:00Z", *UNTIL, tmp=tmp_path)
    summary = data["summary"]
    assert summary["period"] == {
        "since": "2026-03-01T00:00:00Z",
        "until": "2026-03-01T08:00:00Z",
        "days": round(8 / 24, 4),
    }
    assert summary["attempts"] == 7
    assert summary["outcomes"] == {
        "promoted": 3, "failed": 1, "superseded": 1, "not-promoted": 1, "pending": 1,
    }  # fmt: skip
    # 4 production changes (A1, A3, A6 and the rollback to A3) in a third of a day.
    assert (summary["deployments"], summary["rollbacks"]) == (4, 1)
    assert summary["deployments_per_day"] == 4.0  # 4 over a third of a day, counted as one day
    # Promoted 3 of the 6 attempts that are not pending.
    assert summary["success_rate"] == 0.5
    # Candidate -> production: 10, 20, 30 minutes.
    assert summary["lead_time_median_s"] == 1200
    assert summary["lead_time_p90_s"] == 1800
    assert (summary["lead_time_count"], summary["lead_time_from"]) == (3, "candidate")
    # A2 failed and A6 was rolled back from, of 3 promoted + 1 failed.
    assert (summary["change_failure_rate"], summary["changes_failed"]) == (0.5, 2)
    # A2 failed at T+1h; production next changed at T+2h20m.
    assert summary["time_to_restore_median_s"] == 4800
    assert (summary["incidents"], summary["open_incidents"]) == (1, 0)
    production = summary["production"]
    assert production["candidate"] == built.shas["A3"]
    assert production["commit"] == log(Path(built.repo), "production")[0]
    assert production["since"] == "2026-03-01T06:00:00Z"
    assert production["rollback"] is True
    assert production["images"] == [short_image(image(4))] == ["web@sha256:4b227777d4dd"]
    assert data["result"]["summary"] == summary


def test_lead_time_from_the_source_commit(built: Built, tmp_path: Path) -> None:
    data = history(
        built, "--path", "web", *UNTIL, "--source-repo", str(built.story.app), tmp=tmp_path
    )
    summary = data["summary"]
    # Each source commit is five minutes older than its candidate commit.
    assert (summary["lead_time_median_s"], summary["lead_time_p90_s"]) == (1500, 2100)
    assert summary["lead_time_from"] == "source"
    rows = by_name(built, data["attempts"])
    assert (rows["A1"]["lead_time_s"], rows["A1"]["candidate_to_production_s"]) == (900, 600)


def test_since_fetches_shallow_and_limits_the_period(built: Built, tmp_path: Path) -> None:
    data = history(built, "--path", "web", "--since", "2026-03-01T02:30:00Z", *UNTIL, tmp=tmp_path)
    assert data["result"]["fetch"]["shallow"] is True
    rows = by_name(built, data["attempts"])
    assert sorted(rows) == ["A4", "A5", "A6", "A7"]
    assert rows["A6"]["outcome"] == "promoted"
    summary = data["summary"]
    assert summary["outcomes"] == {
        "promoted": 1, "failed": 0, "superseded": 1, "not-promoted": 1, "pending": 1,
    }  # fmt: skip
    assert (summary["deployments"], summary["rollbacks"]) == (2, 1)
    assert summary["production"]["candidate"] == built.shas["A3"]


def test_without_path_every_attempt_counts(built: Built, tmp_path: Path) -> None:
    data = history(built, *UNTIL, tmp=tmp_path)
    rows = by_name(built, data["attempts"])
    assert len(rows) == 8
    assert rows["api"]["outcome"] == "not-promoted"
    only_api = by_name(built, history(built, "--path", "api", *UNTIL, tmp=tmp_path)["attempts"])
    assert {n: r["outcome"] for n, r in only_api.items()} == {"api": "pending"}


def test_table_is_the_default(
    built: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--repo", built.repo, "--path", "web", *UNTIL]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == [
        "TIME", "(UTC)", "COMMIT", "SOURCE", "BUILD", "OUTCOME", "ROLLBACK", "TO", "PROD", "IMAGES",
    ]  # fmt: skip
    a3 = next(line for line in lines if line.split()[2:3] == [built.shas["A3"][:12]])
    assert "promoted" in a3 and "target" in a3 and "20m 00s" in a3
    assert "success rate          50%" in out
    assert "time to restore       median 1h 20m (1 incidents, 0 open)" in out


def test_build_and_commit_links(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROJECT_ID", "my-proj")
    data = history(
        built, "--path", "web", *UNTIL, "--commit-url", "https://git.example/env/commit/{commit}",
        tmp=tmp_path,
    )  # fmt: skip
    a1 = by_name(built, data["attempts"])["A1"]
    assert a1["build_url"] == (
        "https://console.cloud.google.com/cloud-build/builds;region=global/app-build-2"
        "?project=my-proj"
    )
    assert a1["commit_url"] == f"https://git.example/env/commit/{built.shas['A1']}"
    assert main(["--repo", built.repo, "--build-url", "https://x/{nope}"]) == 2


def test_gitops_variables_and_bad_input(built: Built, tmp_path: Path) -> None:
    env = {**os.environ, "GITOPS_REPO": built.repo, "GITOPS_FORMAT": "json", "GITOPS_PATH": "web"}
    done = run_cli("steps.history", [*UNTIL], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["attempts"]) == 7
    for bad in (["--since", "last tuesday"], ["--format", "pdf"], ["--path", "../x"]):
        done = run_cli("steps.history", ["--repo", built.repo, *bad], env, tmp_path)
        assert done.returncode == 2, (bad, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1


def test_over_http_and_an_empty_repo(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = git_server.repo_url("env.git")
    out = tmp_path / "h.json"
    assert main(["--repo", url, "--format", "json", "--output", str(out)]) == 0
    empty = json.loads(out.read_text())
    assert empty["attempts"] == []
    assert empty["summary"]["production"] is None
    story = Story(url, tmp_path, monkeypatch)
    first = story.attempt(at(0))
    story.verdict(first, "failed", at(5), "ImagePullBackOff")
    second = story.attempt(at(10))
    story.promote(second, at(12))
    assert main(["--repo", url, "--format", "json", "--output", str(out), *UNTIL]) == 0
    data = json.loads(out.read_text())
    assert [a["outcome"] for a in data["attempts"]] == ["promoted", "failed"]
    assert data["summary"]["time_to_restore_median_s"] == 720


# --------------------------------------------------------------------------- the outcome note


def test_record_outcome_appends_and_is_idempotent(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    story = Story(str(bare_repo), tmp_path, monkeypatch)
    sha = story.attempt(at(0))
    assert record_outcome(str(bare_repo), sha, "failed", "X: y", "b1", now=at(1)) == "pushed"
    assert record_outcome(str(bare_repo), sha, "failed", "X: y", "b1", now=at(1)) == "unchanged"
    assert record_outcome(str(bare_repo), sha, "rolled-out", None, "b2", now=at(2)) == "pushed"
    text = git("--git-dir", str(bare_repo), "notes", f"--ref={NOTES_REF}", "show", sha)
    assert [json.loads(line) for line in text.splitlines()] == [
        {"build_id": "b1", "outcome": "failed", "reason": "X: y", "time": "2026-03-01T00:01:00Z"},
        {"build_id": "b2", "outcome": "rolled-out", "time": "2026-03-01T00:02:00Z"},
    ]
    author = git("--git-dir", str(bare_repo), "log", "-1", "--format=%an", NOTES_REF).strip()
    assert author == "gitops-steps bot"


def test_record_outcome_refuses_bad_input(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    from steps.lib.errors import UsageError

    with pytest.raises(UsageError, match="expected one of"):
        record_outcome(str(bare_repo), "a" * 40, "exploded", None, None)
    with pytest.raises(UsageError, match="full commit SHA"):
        record_outcome(str(bare_repo), "abc123", "failed", None, None)
    with pytest.raises(UsageError, match="no such local repository"):
        record_outcome(str(tmp_path / "nowhere"), "a" * 40, "failed", None, None)


def test_record_outcome_retries_when_the_notes_moved(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = git_server.repo_url("env.git")
    story = Story(url, tmp_path, monkeypatch)
    first = story.attempt(at(0))
    second = story.attempt(at(1))
    real_push = NotesWorkspace.push
    calls: list[PushOutcome] = []

    def push(self: NotesWorkspace, commit: str, branch: str) -> PushOutcome:
        if not calls:
            calls.append(PushOutcome("racing"))
            # Someone else records a verdict on the other attempt meanwhile.
            assert record_outcome(url, first, "superseded", None, "other", now=at(2)) == "pushed"
        calls.append(real_push(self, commit, branch))
        return calls[-1]

    monkeypatch.setattr(NotesWorkspace, "push", push)
    monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    assert record_outcome(url, second, "failed", "Boom", "mine", now=at(3)) == "pushed"
    assert [c.kind for c in calls] == ["racing", "ok", "moved", "ok"]
    notes = git_server.root / "env.git"
    listed = git("--git-dir", str(notes), "notes", f"--ref={NOTES_REF}", "list").split()
    assert set(listed[1::2]) == {first, second}


# --------------------------------------------------------------------------- pure functions


def test_classify_attempt_rules() -> None:
    failed = OutcomeNote("failed", "2026-01-01T00:00:00Z", "Crash")
    rolled = OutcomeNote("rolled-out", "2026-01-01T00:00:00Z")
    superseded = OutcomeNote("superseded", "2026-01-01T00:00:00Z")
    assert classify_attempt(True, failed, False).outcome == "promoted"
    assert classify_attempt(False, failed, True).outcome == "failed"
    assert classify_attempt(False, superseded, True).outcome == "superseded"
    assert classify_attempt(False, rolled, True).reason == "RolledOutNotPromoted"
    assert classify_attempt(False, None, True).outcome == "pending"
    assert classify_attempt(False, rolled, False).outcome == "not-promoted"
    assert classify_attempt(False, None, False).outcome == "not-promoted"


def test_notes_parse_merge_and_latest() -> None:
    a = OutcomeNote("failed", "2026-01-01T00:00:00Z", "x")
    b = OutcomeNote("rolled-out", "2026-01-02T00:00:00Z")
    text = merge_note(merge_note("", a), b)
    assert merge_note(text, a) == text
    assert parse_note(text + 'not json\n{"outcome": "weird"}\n') == [a, b]
    assert latest_verdict([b, a]) == b
    assert latest_verdict([]) is None


def test_figure_helpers() -> None:
    assert nearest_rank([], 0.9) is None
    assert nearest_rank([5.0], 0.9) == 5.0
    assert nearest_rank([float(i) for i in range(1, 11)], 0.9) == 9.0
    assert nearest_rank([float(i) for i in range(1, 12)], 0.9) == 10.0
    assert [duration(s) for s in (None, 5, 65, 3700, 90000, -30)] == [
        "-", "5s", "1m 05s", "1h 01m", "1d 1h", "-30s",
    ]  # fmt: skip
    assert parse_when("2026-03-01", 0, "--since") == int(T0.timestamp())
    assert parse_when("2d", 86400 * 10, "--since") == 86400 * 8
    assert short_image("r.example/p/web@sha256:" + "ab" * 32) == "web@sha256:abababababab"
    assert written_path("S\n\nChanged in web:\n  A x") == "web"
    assert written_path("S\n\nproduction:/ := candidate@abc123:/") == ""
    assert written_path("S") is None
    assert (
        render_link("https://x/{build_id}?p={project}", {"build_id": "b 1", "project": None})
        is None
    )
    assert render_link("https://x/{build_id}", {"build_id": "b 1"}) == "https://x/b%201"


def _candidate(sha: str, minute: int, note: OutcomeNote | None = None) -> Candidate:
    return Candidate(sha, minute * 60, "s", None, None, None, (), (note,) if note else ())


def _deployment(sha: str, minute: int, source: str, rollback: str | None = None) -> Deployment:
    return Deployment(sha, minute * 60, "s", source, rollback, None, None, ())


def test_incidents_and_summary_edge_cases() -> None:
    fail = OutcomeNote("failed", "t")
    candidates = [_candidate("a", 0, fail), _candidate("b", 10, fail), _candidate("c", 20)]
    rows = build_rows(candidates, [_deployment("p1", 30, "c")])
    # Two failures in a row are one incident, from the first failure to the next change.
    assert incidents(rows, [_deployment("p1", 30, "c")]) == [(0, 1800)]
    unrestored = build_rows(candidates, [])
    assert incidents(unrestored, []) == [(0, None)]
    summary = summarize(unrestored, [], None, 3600)
    assert (summary["incidents"], summary["open_incidents"]) == (1, 1)
    assert summary["time_to_restore_median_s"] is None
    assert summary["production"] is None
    assert summary["success_rate"] == 0.0
    empty = summarize([], [], None, 100)
    assert (empty["deployments_per_day"], empty["success_rate"], empty["attempts"]) == (
        None,
        None,
        0,
    )


def test_since_after_the_last_deployment_still_knows_production(
    built: Built, tmp_path: Path
) -> None:
    data = history(built, "--path", "web", "--since", "2026-03-01T06:30:00Z", *UNTIL, tmp=tmp_path)
    assert [a["commit"] for a in data["attempts"]] == [built.shas["A7"]]
    summary = data["summary"]
    assert (summary["deployments"], summary["deployments_per_day"]) == (0, 0.0)
    assert summary["production"]["candidate"] == built.shas["A3"]
    assert summary["production"]["since"] == "2026-03-01T06:00:00Z"
    # candidate since 06:30, production's tip alone, the notes tip.
    assert data["result"]["fetch"] == {
        "fetches": 4,
        "shallow": True,
        "candidate_commits": 1,
        "production_commits": 1,
    }
    data = history(built, "--path", "web", "--since", "2026-03-01T07:30:00Z", *UNTIL, tmp=tmp_path)
    assert data["attempts"] == []
    assert data["summary"]["production"]["candidate"] == built.shas["A3"]
    assert data["result"]["fetch"]["fetches"] == 5


def test_credentials_and_an_unreachable_server(
    tmp_path: Path,
    git_auth_server: GitServer,
    git_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = git_auth_server.repo_url("env.git")
    assert main(["--repo", url]) == 2
    assert "authentication failed" in capsys.readouterr().err
    monkeypatch.setenv("GIT_USERNAME", GIT_USER)
    monkeypatch.setenv("GIT_TOKEN", GIT_PASSWORD)
    story = Story(url, tmp_path, monkeypatch)
    sha = story.attempt(at(0))
    story.verdict(sha, "failed", at(1), "Crash")
    out = tmp_path / "h.json"
    assert main(["--repo", url, "--format", "json", "--output", str(out)]) == 0
    assert [a["outcome"] for a in json.loads(out.read_text())["attempts"]] == ["failed"]
    assert GIT_PASSWORD not in capsys.readouterr().err

    sleeps: list[float] = []
    monkeypatch.setattr("steps.history.time.sleep", sleeps.append)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert main(["--repo", f"http://127.0.0.1:{port}/env.git"]) == 3
    assert len(sleeps) == 2
    assert "gave up after 3 attempts" in capsys.readouterr().err


def test_importing_history_and_notes_is_light() -> None:
    code = (
        "import sys, steps.history, steps.lib.history_html, steps.lib.deploy_notes\n"
        "heavy = ('git', 'kubernetes', 'google')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_verdict_of_a_verify_rollout_result() -> None:
    assert verdict_of_rollout({"status": "rolled-out"}) == ("rolled-out", None)
    failure = {"object": "Deployment/web", "reason": "CrashLoop", "message": "web restarted 5x"}
    assert verdict_of_rollout({"status": "failed", "failure": failure}) == (
        "failed",
        "CrashLoop: Deployment/web: web restarted 5x",
    )
    waiting = [f"Deployment/d{i}" for i in range(7)]
    outcome, reason = verdict_of_rollout({"status": "timed-out", "waiting": waiting})
    assert outcome == "failed"
    assert reason == "TimedOut: still waiting for " + ", ".join(waiting[:5]) + " and 2 more"
    assert verdict_of_rollout({"status": "odd"})[0] == "failed"
