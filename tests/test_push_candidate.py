"""gitops-push-candidate against real repositories: local bare and over HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_git import (
    GIT_PASSWORD,
    GIT_USER,
    files_at,
    git,
    log,
    run_cli,
    seed,
    write_tree,
)

from steps.lib import git_retry
from steps.lib.candidate_push import default_subject, image_references
from steps.lib.git_failures import PushOutcome
from steps.lib.git_messages import parse_trailers
from steps.lib.gitrepo import Workspace
from steps.push_candidate import main
from steps.sandbox.gitserver import GitServer

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
WEB_A = f"us-docker.pkg.dev/p/r/web@{DIGEST_A}"
WEB_B = f"us-docker.pkg.dev/p/r/web@{DIGEST_B}"


def deployment(image: str, replicas: int = 1) -> str:
    return (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n"
        f"  replicas: {replicas}\n  template:\n    spec:\n      containers:\n"
        f"        - name: web\n          image: {image}\n"
    )


def result_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def provenance(monkeypatch: pytest.MonkeyPatch, git_env: dict[str, str]) -> None:
    monkeypatch.setenv("REPO_NAME", "web-app")
    monkeypatch.setenv("COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("BUILD_ID", "build-1")


# ----------------------------------------------------------------- the basics


def test_first_push_creates_the_branch_with_trailers(
    tmp_path: Path, bare_repo: Path, provenance: None
) -> None:
    src = write_tree(tmp_path / "out", {"deploy.yaml": deployment(WEB_A), "svc/ns.yaml": "x: 1\n"})
    result_file = tmp_path / "result.json"
    args = ["--repo", str(bare_repo), "--from", str(src), "--path", "web"]
    code = main([*args, "--result-file", str(result_file)])
    assert code == 0
    result = result_of(result_file)
    assert result["status"] == "pushed"
    assert result["created"] is True
    assert result["images"] == [WEB_A]
    assert files_at(bare_repo, "candidate") == {
        "web/deploy.yaml": deployment(WEB_A),
        "web/svc/ns.yaml": "x: 1\n",
    }
    [message] = log(bare_repo, "candidate", "%B")
    assert message.startswith("Deploy web@sha256:aaaaaaaaaaaa to web\n")
    assert parse_trailers(message) == [
        ("Gitops-Step", "push-candidate"),
        ("Source-Repo", "web-app"),
        ("Source-Commit", "0123456789abcdef0123456789abcdef01234567"),
        ("Build-Id", "build-1"),
        ("Image", WEB_A),
    ]
    [who] = log(bare_repo, "candidate", "%an <%ae>|%cn <%ce>")
    bot = "gitops-steps bot <gitops-bot@gitops-steps.invalid>"
    assert who == f"{bot}|{bot}"
    assert result["commit"] == log(bare_repo, "candidate")[0]


def test_mirror_adds_changes_and_deletes_only_inside_the_path(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    seed(
        bare_repo,
        "candidate",
        {"web/keep.yaml": "k\n", "web/old.yaml": "o\n", "web/chg.yaml": "1\n", "api/a.yaml": "a\n"},
        tmp_path / "w",
    )
    src = write_tree(tmp_path / "out", {"keep.yaml": "k\n", "chg.yaml": "2\n", "new/n.yaml": "n\n"})
    result_file = tmp_path / "r.json"
    args = ["--repo", str(bare_repo), "--from", str(src), "--path", "web/"]
    assert main([*args, "--result-file", str(result_file)]) == 0
    assert files_at(bare_repo, "candidate") == {
        "api/a.yaml": "a\n",
        "web/chg.yaml": "2\n",
        "web/keep.yaml": "k\n",
        "web/new/n.yaml": "n\n",
    }
    assert result_of(result_file)["changes"] == [
        {"change": "M", "path": "chg.yaml"},
        {"change": "A", "path": "new/n.yaml"},
        {"change": "D", "path": "old.yaml"},
    ]
    assert len(log(bare_repo, "candidate")) == 2


def test_unchanged_is_idempotent_and_allow_empty_redeploys(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    src = write_tree(tmp_path / "out", {"deploy.yaml": deployment(WEB_A)})
    args = ["--repo", str(bare_repo), "--from", str(src), "--path", "web"]
    assert main(args) == 0
    result_file = tmp_path / "r.json"
    assert main([*args, "--result-file", str(result_file)]) == 0
    assert result_of(result_file)["status"] == "unchanged"
    assert len(log(bare_repo, "candidate")) == 1
    assert main([*args, "--allow-empty", "--message", "Redeploy web"]) == 0
    history = log(bare_repo, "candidate", "%s")
    assert history == ["Redeploy web", "Deploy web@sha256:aaaaaaaaaaaa to web"]


def test_missing_branch_starts_from_the_base_branch(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    base = seed(bare_repo, "production", {"api/a.yaml": "a\n", "web/x": "1"}, tmp_path / "w")
    src = write_tree(tmp_path / "out", {"x": "2"})
    assert main(["--repo", str(bare_repo), "--from", str(src), "--path", "web"]) == 0
    assert files_at(bare_repo, "candidate") == {"api/a.yaml": "a\n", "web/x": "2"}
    assert log(bare_repo, "candidate")[1] == base


def test_author_flag_and_env_variables_for_flags(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write_tree(tmp_path / "out", {"a": "1"})
    monkeypatch.setenv("GITOPS_REPO", str(bare_repo))
    monkeypatch.setenv("GITOPS_FROM", str(src))
    monkeypatch.setenv("GITOPS_BRANCH", "cand")
    monkeypatch.setenv("GITOPS_COMMITTER", "Env Bot <envbot@example.test>")
    assert main(["--author", "Ada <ada@example.test>"]) == 0
    assert log(bare_repo, "cand", "%an <%ae>|%cn <%ce>") == [
        "Ada <ada@example.test>|Env Bot <envbot@example.test>"
    ]


def test_author_defaults_to_the_source_commit_author(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source_repo = tmp_path / "app"
    write_tree(source_repo / "k8s", {"d.yaml": "a: 1\n"})
    git("init", "--quiet", str(source_repo))
    git("add", ".", cwd=source_repo)
    git(
        "commit",
        "--quiet",
        "-m",
        "app change",
        cwd=source_repo,
        env={"GIT_AUTHOR_NAME": "Grace", "GIT_AUTHOR_EMAIL": "grace@example.test"},
    )
    monkeypatch.setenv("COMMIT_SHA", git("rev-parse", "HEAD", cwd=source_repo).strip())
    assert main(["--repo", str(bare_repo), "--from", str(source_repo / "k8s")]) == 0
    assert log(bare_repo, "candidate", "%an") == ["Grace"]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--path", "../escape"], "--path"),
        (["--branch", "-delete"], "--branch"),
        (["--committer", "root <root@localhost>"], "--committer"),
        (["--max-attempts", "0"], "--max-attempts"),
        (["--image", WEB_B], "exactly one of"),
    ],
)
def test_bad_input_is_exit_2_naming_the_flag(
    tmp_path: Path,
    bare_repo: Path,
    git_env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    words: str,
) -> None:
    src = write_tree(tmp_path / "out", {"a": "1"})
    assert main(["--repo", str(bare_repo), "--from", str(src), *args]) == 2
    assert words in capsys.readouterr().err
    assert log_or_empty(bare_repo) == []


def test_missing_source_directory_and_missing_repo(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--repo", str(bare_repo), "--from", str(tmp_path / "nope")]) == 2
    assert "--from" in capsys.readouterr().err
    src = write_tree(tmp_path / "out", {"a": "1"})
    assert main(["--repo", str(tmp_path / "nope.git"), "--from", str(src)]) == 2
    assert "--repo" in capsys.readouterr().err


def log_or_empty(repo: Path) -> list[str]:
    refs = git("--git-dir", str(repo), "for-each-ref", "--format=%(refname)").split()
    return refs


def test_pure_helpers() -> None:
    text = f"image: {WEB_A}\n  image: 'nginx:1.25@{DIGEST_B}'\nimage: nginx:latest\n"
    assert image_references(text) == [WEB_A, f"nginx@{DIGEST_B}"]
    assert default_subject("", [], None) == "Update the repository"
    assert default_subject("web", [WEB_A] * 4, None).endswith("and 1 more to web")


# ----------------------------------------------------------------- concurrency, in one process


def racing_push(
    monkeypatch: pytest.MonkeyPatch, competitor: Callable[[], object], times: int = 1
) -> list[PushOutcome]:
    """Make someone else push right before our next ``times`` pushes."""
    real_push = Workspace.push
    outcomes: list[PushOutcome] = []

    def push(self: Workspace, commit: str, branch: str) -> PushOutcome:
        if len(outcomes) < times:
            competitor()
        outcome = real_push(self, commit, branch)
        outcomes.append(outcome)
        return outcome

    monkeypatch.setattr(Workspace, "push", push)
    monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    return outcomes


def test_rejected_push_re_applies_our_change_on_the_new_tip(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(bare_repo, "candidate", {"web/a": "1", "web/b": "1"}, tmp_path / "w")
    outcomes = racing_push(
        monkeypatch,
        lambda: seed(
            bare_repo, "candidate", {"web/c": "theirs"}, tmp_path / "w", "other", remove=["web/b"]
        ),
    )
    src = write_tree(tmp_path / "out", {"a": "2", "b": "1"})
    result_file = tmp_path / "r.json"
    args = ["--repo", str(bare_repo), "--from", str(src), "--path", "web"]
    assert main([*args, "--result-file", str(result_file)]) == 0
    assert [o.kind for o in outcomes] == ["moved", "ok"]
    # Our change (a: 1 -> 2) on top of theirs; their delete of b and add of c survive.
    assert files_at(bare_repo, "candidate") == {"web/a": "2", "web/c": "theirs"}
    assert log(bare_repo, "candidate", "%s")[:2] == ["Update web", "other"]
    assert result_of(result_file)["attempts"] == 2


def test_same_file_changed_differently_is_a_conflict_exit_1(
    tmp_path: Path,
    bare_repo: Path,
    git_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed(bare_repo, "candidate", {"web/deploy.yaml": deployment(WEB_A)}, tmp_path / "w")
    theirs = deployment(WEB_A, replicas=3)
    racing_push(
        monkeypatch,
        lambda: seed(bare_repo, "candidate", {"web/deploy.yaml": theirs}, tmp_path / "w"),
    )
    src = write_tree(tmp_path / "out", {"deploy.yaml": deployment(WEB_B)})
    assert main(["--repo", str(bare_repo), "--from", str(src), "--path", "web"]) == 1
    err = capsys.readouterr().err
    assert "conflict: web/deploy.yaml" in err
    assert show_file(bare_repo, "web/deploy.yaml") == theirs


@pytest.mark.parametrize(
    ("racer_source", "expected"),
    [("app", 0), ("other-app", 1), (None, 1)],
    ids=["another-build-of-the-same-app", "another-source", "a-person"],
)
def test_builds_of_the_same_app_racing_record_every_attempt(
    tmp_path: Path,
    bare_repo: Path,
    git_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    racer_source: str | None,
    expected: int,
) -> None:
    """Three app commits built at once all reach candidate; a person's edit still conflicts."""
    monkeypatch.setenv("REPO_NAME", "app")
    seed(bare_repo, "candidate", {"web/deploy.yaml": deployment(WEB_A)}, tmp_path / "w")
    theirs = deployment(WEB_A, replicas=3)
    trailer = (
        f"\n\nGitops-Step: push-candidate\nSource-Repo: {racer_source}\n" if racer_source else ""
    )
    racing_push(
        monkeypatch,
        lambda: seed(
            bare_repo,
            "candidate",
            {"web/deploy.yaml": theirs},
            tmp_path / "w",
            message=f"Deploy web{trailer}",
        ),
    )
    ours = deployment(WEB_B)
    src = write_tree(tmp_path / "out", {"deploy.yaml": ours})

    assert main(["--repo", str(bare_repo), "--from", str(src), "--path", "web"]) == expected

    if expected == 0:
        assert show_file(bare_repo, "web/deploy.yaml") == ours
        assert len(log(bare_repo, "candidate")) == 3  # seed, their attempt, ours
    else:
        assert show_file(bare_repo, "web/deploy.yaml") == theirs


def test_same_change_made_by_someone_else_is_unchanged(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(bare_repo, "candidate", {"web/a": "1"}, tmp_path / "w")
    racing_push(monkeypatch, lambda: seed(bare_repo, "candidate", {"web/a": "2"}, tmp_path / "w"))
    src = write_tree(tmp_path / "out", {"a": "2"})
    result_file = tmp_path / "r.json"
    args = ["--repo", str(bare_repo), "--from", str(src), "--path", "web"]
    assert main([*args, "--result-file", str(result_file)]) == 0
    assert result_of(result_file)["status"] == "unchanged"
    assert len(log(bare_repo, "candidate")) == 2


def test_a_push_whose_answer_was_lost_is_not_pushed_twice(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_push = Workspace.push
    calls: list[str] = []

    def push(self: Workspace, commit: str, branch: str) -> PushOutcome:
        calls.append(commit)
        outcome = real_push(self, commit, branch)
        if len(calls) == 1:  # it landed, but the connection dropped before we heard
            return PushOutcome("network", "fatal: the remote end hung up unexpectedly")
        return outcome

    monkeypatch.setattr(Workspace, "push", push)
    monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    seed(bare_repo, "candidate", {"web/a": "1"}, tmp_path / "w")
    src = write_tree(tmp_path / "out", {"a": "2"})
    result_file = tmp_path / "r.json"
    args = ["--repo", str(bare_repo), "--from", str(src), "--path", "web"]
    assert main([*args, "--result-file", str(result_file)]) == 0
    result = result_of(result_file)
    assert (result["status"], result["commit"]) == ("pushed", calls[0])
    assert len(calls) == 1
    assert len(log(bare_repo, "candidate")) == 2


def show_file(repo: Path, path: str, ref: str = "candidate") -> str:
    return git("--git-dir", str(repo), "show", f"{ref}:{path}")


# ----------------------------------------------------------------- over HTTP, with credentials


def test_push_over_http(tmp_path: Path, git_server: GitServer, git_env: dict[str, str]) -> None:
    src = write_tree(tmp_path / "out", {"deploy.yaml": deployment(WEB_A)})
    url = git_server.repo_url("env.git")
    assert main(["--repo", url, "--from", str(src), "--path", "web"]) == 0
    assert main(["--repo", url, "--from", str(src), "--path", "web"]) == 0
    repo = git_server.root / "env.git"
    assert files_at(repo, "candidate") == {"web/deploy.yaml": deployment(WEB_A)}
    assert len(log(repo, "candidate")) == 1


def test_token_never_leaks_and_wrong_token_is_exit_2(
    tmp_path: Path, git_auth_server: GitServer, git_env: dict[str, str]
) -> None:
    workspace = tmp_path / "workspace"
    src = write_tree(workspace / "out", {"deploy.yaml": deployment(WEB_A)})
    builder_output = tmp_path / "builder"
    env = {
        **git_env,
        "GIT_TOKEN": GIT_PASSWORD,
        "GIT_USERNAME": GIT_USER,
        "BUILDER_OUTPUT": str(builder_output),
        "BUILD_ID": "b-7",
        "GIT_TRACE": "1",
    }
    url = git_auth_server.repo_url("env.git")
    args = ["--repo", url, "--from", "out", "--path", "web", "--result-file", "result.json"]
    ok = run_cli("steps.push_candidate", args, env, cwd=workspace)
    assert ok.returncode == 0, ok.stderr
    unchanged = run_cli("steps.push_candidate", args, env, cwd=workspace)
    assert unchanged.returncode == 0, unchanged.stderr
    no_token = {k: v for k, v in env.items() if k != "GIT_TOKEN"}
    denied = run_cli("steps.push_candidate", args, no_token, cwd=workspace)
    assert denied.returncode == 2
    wrong = run_cli("steps.push_candidate", args, {**env, "GIT_TOKEN": "wrong-token-1"}, workspace)
    assert wrong.returncode == 2
    assert "authentication failed" in wrong.stderr

    encoded = base64.b64encode(f"{GIT_USER}:{GIT_PASSWORD}".encode()).decode()
    printed = [p.stdout + p.stderr for p in (ok, unchanged, denied, wrong)]
    written = [f.read_bytes().decode("utf-8", "replace") for f in all_files(workspace)]
    written += [f.read_bytes().decode("utf-8", "replace") for f in all_files(builder_output)]
    repo = git_auth_server.root / "env.git"
    history = git("--git-dir", str(repo), "log", "--all", "--format=%B%an%ae%cn%ce")
    config = (repo / "config").read_text()
    for text in [*printed, *written, history, config]:
        assert GIT_PASSWORD not in text
        assert encoded not in text
    assert sorted(p.name for p in all_files(workspace)) == ["deploy.yaml", "result.json"]
    assert src.exists()


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


# ----------------------------------------------------------------- --image mode


def test_image_mode_pins_in_place_and_re_runs_on_a_new_tip(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(bare_repo, "candidate", {"web/deploy.yaml": deployment("web:v1")}, tmp_path / "w")
    racing_push(
        monkeypatch,
        lambda: seed(
            bare_repo, "candidate", {"web/deploy.yaml": deployment("web:v1", 3)}, tmp_path / "w"
        ),
    )
    result_file = tmp_path / "r.json"
    args = ["--repo", str(bare_repo), "--path", "web", "--image", f"web@{DIGEST_B}"]
    assert main([*args, "--result-file", str(result_file)]) == 0
    # The edit was re-run on their tip: their replicas change stays, our image lands.
    assert show_file(bare_repo, "web/deploy.yaml") == deployment(f"web@{DIGEST_B}", 3)
    result = result_of(result_file)
    assert result["attempts"] == 2
    assert result["images"] == [f"web@{DIGEST_B}"]
    assert [(e["path"], e["new"]) for e in result["edits"]] == [("deploy.yaml", f"web@{DIGEST_B}")]
    message = log(bare_repo, "candidate", "%B")[0]
    assert message.startswith("Deploy web@sha256:bbbbbbbbbbbb to web")
    assert ("Image", f"web@{DIGEST_B}") in parse_trailers(message)


def test_image_mode_unmatched_image_is_exit_2(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    seed(bare_repo, "candidate", {"web/deploy.yaml": deployment("web:v1")}, tmp_path / "w")
    args = ["--repo", str(bare_repo), "--path", "web", "--image", f"other@{DIGEST_B}"]
    assert main(args) == 2
    assert "--image" in capsys.readouterr().err
    assert main([*args, "--allow-unmatched"]) == 0
    assert len(log(bare_repo, "candidate")) == 1


def test_path_that_is_a_file_on_the_branch_is_exit_2(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    seed(bare_repo, "candidate", {"web": "a file\n"}, tmp_path / "w")
    src = write_tree(tmp_path / "out", {"a": "1"})
    assert main(["--repo", str(bare_repo), "--from", str(src), "--path", "web"]) == 2
    assert "--path web: is a file, not a directory" in capsys.readouterr().err
