"""gitops-promote: promotion, rollback, idempotency and refusals, on real repositories."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_git import GIT_PASSWORD, GIT_USER, files_at, git, log, run_cli, seed, write_tree

from steps.lib import git_retry
from steps.lib.git_failures import PushOutcome
from steps.lib.git_messages import parse_trailers
from steps.lib.gitrepo import Workspace
from steps.lib.promotion import promoted_from, promotion_kind
from steps.promote import main
from steps.push_candidate import main as push_candidate
from steps.sandbox.gitserver import GitServer

IMAGE = "us-docker.pkg.dev/p/r/web@sha256:" + "c" * 64


class Env:
    """An env repo with a candidate history built by push-candidate itself."""

    def __init__(self, repo: str, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.repo = repo
        self.work = work
        self.monkeypatch = monkeypatch
        self.count = 0

    def candidate(self, path: str, files: dict[str, str]) -> str:
        self.count += 1
        self.monkeypatch.setenv("COMMIT_SHA", f"{self.count:040x}")
        self.monkeypatch.setenv("BUILD_ID", f"push-{self.count}")
        src = self.work / f"src-{self.count}"
        write_tree(src, files)
        assert push_candidate(["--repo", self.repo, "--from", str(src), "--path", path]) == 0
        self.monkeypatch.delenv("COMMIT_SHA")
        return git("ls-remote", self.repo, "refs/heads/candidate").split()[0]

    def promote(self, sha: str, *args: str) -> tuple[int, dict[str, Any]]:
        result_file = self.work / "promote.json"
        result_file.unlink(missing_ok=True)
        code = main(
            ["--repo", self.repo, "--commit", sha, *args, "--result-file", str(result_file)]
        )
        return code, json.loads(result_file.read_text())


@pytest.fixture
def env(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Env:
    return Env(str(bare_repo), tmp_path, monkeypatch)


def messages(repo: str | Path, ref: str = "production") -> list[str]:
    return log(Path(repo), ref, "%B")


def test_promote_copies_the_path_and_carries_trailers(env: Env) -> None:
    seed(env.repo, "production", {"api/a.yaml": "api\n", "web/old.yaml": "o\n"}, env.work / "w")
    sha = env.candidate("web", {"deploy.yaml": f"image: {IMAGE}\n"})
    env.monkeypatch.setenv("BUILD_ID", "promote-9")
    code, result = env.promote(sha, "--path", "web")
    assert code == 0
    assert (result["status"], result["kind"]) == ("pushed", "promote")
    assert files_at(Path(env.repo), "production") == {
        "api/a.yaml": "api\n",
        "web/deploy.yaml": f"image: {IMAGE}\n",
    }
    message = messages(env.repo)[0]
    assert message.startswith(f"Promote {sha[:12]}: Deploy web@sha256:cccccccccccc to web\n")
    assert parse_trailers(message) == [
        ("Gitops-Step", "promote"),
        ("Promoted-From", f"candidate@{sha}"),
        ("Release", sha),  # the candidate commit, named by every environment down the chain
        ("Build-Id", "promote-9"),
        ("Source-Commit", f"{1:040x}"),
        ("Image", IMAGE),
    ]
    assert result["commit"] == log(Path(env.repo), "production")[0]


def test_promote_is_idempotent(env: Env) -> None:
    sha = env.candidate("web", {"a": "1"})
    assert env.promote(sha, "--path", "web")[0] == 0
    code, result = env.promote(sha, "--path", "web")
    assert (code, result["status"]) == (0, "unchanged")
    assert len(log(Path(env.repo), "production")) == 1


def test_rollback_is_recorded_as_such(env: Env) -> None:
    first = env.candidate("web", {"a": "1"})
    second = env.candidate("web", {"a": "2"})
    third = env.candidate("web", {"a": "3"})
    assert env.promote(first, "--path", "web")[0] == 0
    assert env.promote(third, "--path", "web")[0] == 0
    code, result = env.promote(second, "--path", "web")
    assert (code, result["kind"], result["live_before"]) == (0, "rollback", third)
    assert files_at(Path(env.repo), "production") == {"web/a": "2"}
    message = messages(env.repo)[0]
    assert message.startswith(f"Rollback to {second[:12]}: ")
    trailers = dict(parse_trailers(message))
    assert trailers["Rollback-From"] == third
    assert trailers["Promoted-From"] == f"candidate@{second}"
    # Going forward again is a promotion, not a rollback.
    code, result = env.promote(third, "--path", "web")
    assert (code, result["kind"]) == (0, "promote")


def test_an_older_commit_of_another_path_is_not_a_rollback(env: Env) -> None:
    web = env.candidate("web", {"a": "1"})
    api = env.candidate("api", {"b": "1"})
    assert env.promote(api, "--path", "api")[0] == 0
    code, result = env.promote(web, "--path", "web")
    assert (code, result["kind"]) == (0, "promote")
    assert files_at(Path(env.repo), "production") == {"api/b": "1", "web/a": "1"}


def test_a_commit_not_on_the_branch_is_exit_2(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.candidate("web", {"a": "1"})
    other = seed(env.repo, "elsewhere", {"web/a": "x"}, env.work / "w")
    code, result = env.promote(other, "--path", "web")
    assert code == 2
    assert "not on branch candidate" in result["error"]
    assert main(["--repo", env.repo, "--commit", "not-a-sha"]) == 2
    assert "--commit" in capsys.readouterr().err
    assert "production" not in git("ls-remote", env.repo)


def test_commit_defaults_to_cloud_builds_commit_sha(env: Env) -> None:
    sha = env.candidate("", {"a": "1"})
    env.monkeypatch.setenv("COMMIT_SHA", sha)
    assert main(["--repo", env.repo]) == 0
    assert files_at(Path(env.repo), "production") == {"a": "1"}


def test_finds_a_commit_deep_in_a_long_candidate_history(env: Env) -> None:
    old = env.candidate("web", {"a": "old"})
    work = env.work / "deep"
    git("clone", "--quiet", "--branch", "candidate", env.repo, str(work))
    for i in range(150):
        (work / "filler").write_text(str(i))
        git("add", "filler", cwd=work)
        git("commit", "--quiet", "-m", f"filler {i}", cwd=work)
    git("push", "--quiet", "origin", "candidate", cwd=work)
    code, result = env.promote(old[:12], "--path", "web")
    assert (code, result["from"]) == (0, f"candidate@{old}")
    assert files_at(Path(env.repo), "production") == {"web/a": "old"}


def test_promote_retries_when_production_moves(env: Env) -> None:
    sha = env.candidate("web", {"a": "1"})
    seed(env.repo, "production", {"api/x": "1"}, env.work / "w")
    real_push = Workspace.push
    calls: list[PushOutcome] = []

    def push(self: Workspace, commit: str, branch: str) -> PushOutcome:
        if not calls:
            seed(env.repo, "production", {"api/x": "2"}, env.work / "w")
        calls.append(real_push(self, commit, branch))
        return calls[-1]

    env.monkeypatch.setattr(Workspace, "push", push)
    env.monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    code, result = env.promote(sha, "--path", "web")
    assert (code, result["attempts"]) == (0, 2)
    assert [c.kind for c in calls] == ["moved", "ok"]
    assert files_at(Path(env.repo), "production") == {"api/x": "2", "web/a": "1"}
    assert git("--git-dir", env.repo, "rev-list", "--merges", "production") == ""


def test_promote_over_http(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(git_server.repo_url("env.git"), tmp_path, monkeypatch)
    first = env.candidate("web", {"a": "1"})
    second = env.candidate("web", {"a": "2"})
    assert env.promote(second, "--path", "web")[0] == 0
    code, result = env.promote(first, "--path", "web")
    assert (code, result["kind"]) == (0, "rollback")
    assert files_at(git_server.root / "env.git", "production") == {"web/a": "1"}


def test_pure_decisions() -> None:
    marker = "Gitops-Step: promote\n"
    assert promoted_from(f"S\n\n{marker}Promoted-From: candidate@ABCDEF1234567\nBuild-Id: x") == (
        "abcdef1234567"
    )
    # Only our own trailer block counts: not one a --message or a person wrote.
    assert promoted_from("S\n\nPromoted-From: candidate@ABCDEF1234567\nBuild-Id: x") is None
    assert promoted_from("S\n\nBuild-Id: x") is None
    assert promotion_kind("a", "b", True) == "rollback"
    assert promotion_kind("a", "b", False) == "promote"
    assert promotion_kind("a", "a", True) == "promote"
    assert promotion_kind("a", None, False) == "promote"


def test_promoting_a_path_that_is_empty_at_the_commit_is_refused(env: Env) -> None:
    sha = env.candidate("web", {"a": "1"})
    code, result = env.promote(sha, "--path", "api")
    assert code == 2
    assert "--path api: nothing there" in result["error"]


def test_promote_with_a_token_never_leaks_it(
    tmp_path: Path, git_auth_server: GitServer, git_env: dict[str, str]
) -> None:
    workspace = tmp_path / "workspace"
    write_tree(workspace / "out", {"a.yaml": "a: 1\n"})
    builder = tmp_path / "builder"
    env = {
        **git_env,
        "GIT_TOKEN": GIT_PASSWORD,
        "GIT_USERNAME": GIT_USER,
        "BUILDER_OUTPUT": str(builder),
        "BUILD_ID": "b-1",
    }
    url = git_auth_server.repo_url("env.git")
    pushed = run_cli("steps.push_candidate", ["--repo", url, "--from", "out"], env, workspace)
    assert pushed.returncode == 0, pushed.stderr
    sha = git("--git-dir", str(git_auth_server.root / "env.git"), "rev-parse", "candidate").strip()
    args = ["--repo", url, "--commit", sha, "--result-file", "promote.json"]
    runs = [run_cli("steps.promote", args, env, workspace) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    wrong = run_cli("steps.promote", args, {**env, "GIT_TOKEN": "not-the-token"}, workspace)
    assert wrong.returncode == 2
    encoded = base64.b64encode(f"{GIT_USER}:{GIT_PASSWORD}".encode()).decode()
    texts = [r.stdout + r.stderr for r in [pushed, *runs, wrong]]
    texts += [p.read_text() for p in [*workspace.rglob("*"), *builder.rglob("*")] if p.is_file()]
    for text in texts:
        assert GIT_PASSWORD not in text and encoded not in text
    assert json.loads((workspace / "promote.json").read_text())["exit_code"] == 2


def test_a_fetch_the_server_fails_once_is_retried_and_persistent_failure_is_exit_3(
    tmp_path: Path,
    git_server: GitServer,
    git_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """promote's first fetch (finding --commit on --from) was not retried: a server
    that stumbled once made it exit 70 with a traceback, as if it were a bug."""
    env = Env(git_server.repo_url("env.git"), tmp_path, monkeypatch)
    sha = env.candidate("web", {"a": "1"})
    git_server.fail_fetches = 1
    code, result = env.promote(sha, "--path", "web")
    assert (code, result["kind"], git_server.fail_fetches) == (0, "promote", 0)

    second = env.candidate("web", {"a": "2"})
    git_server.fail_fetches = 1000
    code, result = env.promote(second, "--path", "web")
    assert code == 3, result
    assert "gave up after 3 attempts" in result["error"]
    git_server.fail_fetches = 0
