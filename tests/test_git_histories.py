"""candidate and production tell the truth under races, lost answers and hostile input.

Real repositories, the loopback Git server with its faults (held pushes,
dropped answers), concurrent stage processes, and the Kubernetes emulator for
the live record. Each test failed on the code before its fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_git import files_at, git, log, run_cli, seed, write_tree
from test_promote import Env
from test_push_candidate import deployment

from steps.lib import git_failures, git_retry, gitrepo
from steps.lib.deploy_notes import MAX_NOTE, make_note, merge_note
from steps.lib.git_messages import parse_trailers, tool_trailers
from steps.push_candidate import main as push_candidate
from steps.sandbox.gitserver import GitServer

DIGEST = "sha256:" + "e" * 64


def result_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def first_push_only(action: Callable[[], object]) -> Callable[[int], None]:
    """A server callback running ``action`` for the first push it sees, once."""
    seen: list[int] = []

    def callback(number: int) -> None:
        if not seen:
            seen.append(number)
            action()

    return callback


def promote_process(repo: str, sha: str, work: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    result = work / f"promote-{sha[:8]}.json"
    args = ["--repo", repo, "--commit", sha, "--path", "web", "--result-file", str(result)]
    return subprocess.Popen(
        [sys.executable, "-m", "steps.promote", *args],
        env=env,
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ----------------------------------------------------------------- racing promotes


def test_a_promote_that_lost_the_race_to_a_newer_candidate_is_superseded(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(git_server.repo_url("env.git"), tmp_path, monkeypatch)
    c2, c3, c4 = (env.candidate("web", {"a": str(n)}) for n in (2, 3, 4))
    assert env.promote(c2, "--path", "web")[0] == 0
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(60)

    git_server.before_push = first_push_only(hold)
    older = promote_process(env.repo, c3, tmp_path, git_env)
    try:
        assert held.wait(60), "c3's promote never pushed"
        # c4's whole promotion lands while c3's push is on the wire.
        newer = run_cli(
            "steps.promote",
            ["--repo", env.repo, "--commit", c4, "--path", "web"],
            git_env,
            tmp_path,
        )
        assert newer.returncode == 0, newer.stderr
    finally:
        release.set()
        _, err = older.communicate(timeout=120)
    assert older.returncode == 0, err
    result = result_of(tmp_path / f"promote-{c3[:8]}.json")
    assert (result["status"], result["attempts"], result["live"]) == ("superseded", 2, c4)
    subjects = log(git_server.root / "env.git", "production", "%s")
    assert [s.split(":")[0] for s in subjects] == [f"Promote {c4[:12]}", f"Promote {c2[:12]}"]
    assert files_at(git_server.root / "env.git", "production") == {"web/a": "4"}


def test_racing_promotes_never_roll_back_on_a_retry(
    tmp_path: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """c3 and c4 promoted at once, four times: a retry never writes 'Rollback to c3'."""
    for trial in range(4):
        work = tmp_path / f"trial-{trial}"
        work.mkdir()
        repo = work / "env.git"
        git("init", "--quiet", "--bare", str(repo))
        env = Env(str(repo), work, monkeypatch)
        c2, c3, c4 = (env.candidate("web", {"a": str(n)}) for n in (2, 3, 4))
        assert env.promote(c2, "--path", "web")[0] == 0
        procs = [promote_process(str(repo), sha, work, git_env) for sha in (c3, c4)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], errors
        older = result_of(work / f"promote-{c3[:8]}.json")
        if older.get("kind") == "rollback":
            # Only when c4 had fully landed before c3 first looked: what a
            # re-run of an old build looks like from where c3 stands.
            assert (older["attempts"], older["live_before"]) == (1, c4)
        else:
            assert files_at(repo, "production") == {"web/a": "4"}, older
        rollbacks = [m for m in log(repo, "production", "%B") if m.startswith("Rollback")]
        assert len(rollbacks) <= 1


def test_require_live_is_read_again_on_every_attempt(
    tmp_path: Path,
    bare_repo: Path,
    git_env: dict[str, str],
    kube: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from steps.lib.kube_access import Access, connect
    from steps.lib.live_record import LiveRecord, write_live_record

    env = Env(str(bare_repo), tmp_path, monkeypatch)
    c3 = env.candidate("web", {"a": "3"})
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))

    def record(sha: str) -> None:
        write_live_record(api, LiveRecord("prod", "default", sha, "b", "2026-12-01T00:00:00Z"))

    record(c3)
    real_push = gitrepo.Workspace.push
    pushes: list[str] = []
    newer: list[str] = []

    def push(self: gitrepo.Workspace, commit: str, branch: str) -> git_failures.PushOutcome:
        pushes.append(commit)
        if len(pushes) == 1:
            # Meanwhile a newer candidate is pushed (after this promote fetched
            # candidate), rolls out, and someone else writes production.
            newer.append(env.candidate("web", {"a": "4"}))
            record(newer[0])
            seed(bare_repo, "production", {"api/x": "1"}, tmp_path / "w")
        return real_push(self, commit, branch)

    monkeypatch.setattr(gitrepo.Workspace, "push", push)
    monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    live = ["--require-live", "prod", "--kubeconfig", str(kube.kubeconfig)]
    code, result = env.promote(c3, "--path", "web", *live, "--namespace", "default")
    assert (code, result["status"], result["live"]) == (0, "superseded", newer[0])
    assert files_at(bare_repo, "production") == {"api/x": "1"}


# ----------------------------------------------------------------- lost answers


def test_a_lost_answer_then_someone_edits_the_same_file_is_pushed_not_a_conflict(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, repo = git_server.repo_url("env.git"), git_server.root / "env.git"
    seed(url, "candidate", {"web/deploy.yaml": "v: 1\n"}, tmp_path / "w")
    git_server.drop_answers = git_server.pushes + 1  # our first push lands, unheard
    git_server.after_push = first_push_only(
        lambda: seed(url, "candidate", {"web/deploy.yaml": "v: 3\n"}, tmp_path / "w")
    )
    monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    src = write_tree(tmp_path / "out", {"deploy.yaml": "v: 2\n"})
    result_file = tmp_path / "r.json"
    code = push_candidate(
        ["--repo", url, "--from", str(src), "--path", "web", "--result-file", str(result_file)]
    )
    assert code == 0
    result = result_of(result_file)
    history = log(repo, "candidate")
    assert (result["status"], result["commit"]) == ("pushed", history[1])
    assert len(history) == 3  # seed, ours (landed unheard), theirs on top
    assert files_at(repo, "candidate") == {"web/deploy.yaml": "v: 3\n"}


def pile(url: str, branch: str, count: int, work: Path) -> None:
    """``count`` commits by someone else on top of ``branch``, pushed at once."""
    clone = work / "pile"
    git("clone", "--quiet", "--branch", branch, url, str(clone))
    for n in range(count):
        (clone / "other").mkdir(exist_ok=True)
        (clone / "other" / "n").write_text(f"{n}\n")
        git("add", "--all", cwd=clone)
        git("commit", "--quiet", "-m", f"other {n}", cwd=clone)
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=clone)


@pytest.mark.parametrize("allow_empty", [False, True], ids=["change", "allow-empty"])
def test_a_lost_answer_under_more_than_50_commits_is_still_found(
    tmp_path: Path,
    git_server: GitServer,
    git_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    allow_empty: bool,
) -> None:
    url, repo = git_server.repo_url("env.git"), git_server.root / "env.git"
    seed(url, "candidate", {"web/deploy.yaml": "v: 1\n"}, tmp_path / "w")
    git_server.drop_answers = git_server.pushes + 1  # our first push lands, unheard
    git_server.after_push = first_push_only(lambda: pile(url, "candidate", 60, tmp_path))
    monkeypatch.setenv("BUILD_ID", "build-lost")
    monkeypatch.setattr(git_retry, "backoff_delay", lambda *args: 0.01)
    src = write_tree(tmp_path / "out", {"deploy.yaml": "v: 1\n" if allow_empty else "v: 2\n"})
    result_file = tmp_path / "r.json"
    args = ["--repo", url, "--from", str(src), "--path", "web", "--result-file", str(result_file)]
    assert push_candidate([*args, *(["--allow-empty"] if allow_empty else [])]) == 0
    result = result_of(result_file)
    messages = log(repo, "candidate", "%H%n%B")
    ours = [m.split("\n", 1)[0] for m in messages if "Build-Id: build-lost" in m]
    assert len(ours) == 1
    assert (result["status"], result["commit"]) == ("pushed", ours[0])
    assert len(messages) == 62


# ----------------------------------------------------------------- rollbacks


def test_a_rollback_after_candidate_was_force_pushed_is_recorded_as_a_rollback(
    env: Env,
) -> None:
    first = env.candidate("web", {"a": "1"})
    second = env.candidate("web", {"a": "2"})
    assert env.promote(first, "--path", "web")[0] == 0
    assert env.promote(second, "--path", "web")[0] == 0
    git("--git-dir", env.repo, "update-ref", "refs/heads/candidate", first)  # a force-push
    third = env.candidate("web", {"a": "3"})
    assert git("--git-dir", env.repo, "merge-base", "--is-ancestor", first, third) == ""

    code, result = env.promote(first, "--path", "web")
    assert (code, result["kind"], result["live_before"]) == (0, "rollback", second)
    message = log(Path(env.repo), "production", "%B")[0]
    assert message.startswith(f"Rollback to {first[:12]}")
    assert dict(parse_trailers(message))["Rollback-From"] == second
    # A new candidate on the rewritten branch goes forward: a promotion.
    assert env.promote(third, "--path", "web")[1]["kind"] == "promote"


def test_a_rollback_after_other_paths_were_promoted_is_still_a_rollback(env: Env) -> None:
    first = env.candidate("web", {"a": "1"})
    second = env.candidate("web", {"a": "2"})
    assert env.promote(first, "--path", "web")[0] == 0
    assert env.promote(second, "--path", "web")[0] == 0
    for n in range(6):  # production's web commit sinks below the first fetch's depth
        assert env.promote(env.candidate("api", {"b": str(n)}), "--path", "api")[0] == 0
    code, result = env.promote(first, "--path", "web")
    assert (code, result["kind"], result["live_before"]) == (0, "rollback", second)


@pytest.fixture
def env(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Env:
    return Env(str(bare_repo), tmp_path, monkeypatch)


# ----------------------------------------------------------------- trailers and notes


def test_a_message_cannot_forge_trailers(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    forged = f"Deploy\n\nPromoted-From: candidate@{'f' * 40}\nImage: evil.test/x@{DIGEST}"
    src = write_tree(tmp_path / "out", {"a.yaml": "a: 1\n"})
    repo = str(bare_repo)
    assert push_candidate(["--repo", repo, "--from", str(src), "--message", forged]) == 0
    candidate = log(bare_repo, "candidate", "%B")[0]
    assert tool_trailers(candidate) == [("Gitops-Step", "push-candidate")]
    sha = log(bare_repo, "candidate")[0]
    done = run_cli("steps.promote", ["--repo", repo, "--commit", sha], git_env, tmp_path)
    assert done.returncode == 0, done.stderr
    production = log(bare_repo, "production", "%B")[0]
    assert "evil.test" not in "".join(v for _, v in tool_trailers(production))
    shown = run_cli("steps.history", ["--repo", repo, "--format", "json"], git_env, tmp_path)
    attempts = json.loads(shown.stdout)["attempts"]
    assert [(a["commit"], a["outcome"]) for a in attempts] == [(sha, "promoted")]


def test_a_hand_written_trailer_block_is_not_trusted(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    src = write_tree(tmp_path / "out", {"a.yaml": "a: 1\n"})
    assert push_candidate(["--repo", str(bare_repo), "--from", str(src)]) == 0
    sha = log(bare_repo, "candidate")[0]
    seed(
        bare_repo,
        "production",
        {"a.yaml": "a: 1\n"},
        tmp_path / "w",
        f"x\n\nPromoted-From: candidate@{sha}",
    )
    shown = run_cli(
        "steps.history", ["--repo", str(bare_repo), "--format", "json"], git_env, tmp_path
    )
    attempts = json.loads(shown.stdout)["attempts"]
    assert [a["outcome"] for a in attempts] == ["pending"]


def test_a_note_with_control_characters_shifts_no_field(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    src = write_tree(tmp_path / "out", {"a.yaml": "a: 1\n"})
    assert push_candidate(["--repo", str(bare_repo), "--from", str(src), "--message", "Ship"]) == 0
    sha = log(bare_repo, "candidate")[0]
    line = json.dumps(
        {"outcome": "failed", "reason": "Crash\x1fLoop", "time": "2026-12-01T00:00:00Z"}
    )
    note = f"junk\x1f1\x1fjunk\n{line}\n"
    git("--git-dir", str(bare_repo), "notes", "--ref=gitops", "add", "-m", note, sha)
    shown = run_cli(
        "steps.history", ["--repo", str(bare_repo), "--format", "json"], git_env, tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    [attempt] = json.loads(shown.stdout)["attempts"]
    assert (attempt["commit"], attempt["subject"], attempt["outcome"]) == (sha, "Ship", "failed")
    assert "Crash Loop" in f"{attempt['reason']} {attempt['detail']}"


def test_a_note_stays_under_its_size_cap() -> None:
    old = make_note("failed", "x" * 400, "b-old")
    existing = "".join(f"{old.as_line()[:-1]}{n}\n" for n in range(400))
    assert len(existing.encode()) > MAX_NOTE
    new = make_note("rolled-out", None, "b-new")
    merged = merge_note(existing, new)
    assert len(merged.encode()) <= MAX_NOTE
    assert merged.splitlines()[-1] == new.as_line()


# ----------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--path", "web/deploy.yaml/sub"],
            "--path web/deploy.yaml/sub: web/deploy.yaml is a file",
        ),
        (["--path", "web/.GIT"], "must not contain '.git'"),
        (["--path", "web/.Git/x"], "must not contain '.git'"),
    ],
)
def test_a_path_below_a_file_or_named_git_is_exit_2(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str], args: list[str], words: str
) -> None:
    seed(bare_repo, "candidate", {"web/deploy.yaml": "v: 1\n"}, tmp_path / "w")
    before = log(bare_repo, "candidate")
    src = write_tree(tmp_path / "out", {"a.yaml": "a: 1\n"})
    done = run_cli(
        "steps.push_candidate",
        ["--repo", str(bare_repo), "--from", str(src), *args],
        git_env,
        tmp_path,
    )
    assert done.returncode == 2
    assert words in done.stderr
    assert log(bare_repo, "candidate") == before


def test_a_git_directory_in_any_case_inside_from_is_exit_2(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    src = write_tree(tmp_path / "out", {"a.yaml": "a: 1\n", "sub/.GIT/config": "[core]\n"})
    done = run_cli(
        "steps.push_candidate", ["--repo", str(bare_repo), "--from", str(src)], git_env, tmp_path
    )
    assert done.returncode == 2
    assert "'.GIT' cannot be stored in Git" in done.stderr
    assert git("--git-dir", str(bare_repo), "for-each-ref") == ""


def test_an_empty_from_at_the_root_is_exit_2(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    seed(bare_repo, "candidate", {"web/deploy.yaml": "v: 1\n"}, tmp_path / "w")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli(
        "steps.push_candidate", ["--repo", str(bare_repo), "--from", str(empty)], git_env, tmp_path
    )
    assert done.returncode == 2
    assert "would delete every file on the branch" in done.stderr
    assert files_at(bare_repo, "candidate") == {"web/deploy.yaml": "v: 1\n"}


def tree_modes(repo: Path, ref: str) -> dict[str, str]:
    listing = git("--git-dir", str(repo), "ls-tree", "-r", ref)
    return {line.split("\t")[1]: line.split()[0] for line in listing.splitlines()}


def test_directory_symlinks_are_kept_in_from_and_image_modes(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    image = f"us-docker.pkg.dev/p/r/web@{DIGEST}"
    src = write_tree(
        tmp_path / "out", {"v1/deploy.yaml": deployment("us-docker.pkg.dev/p/r/web:1")}
    )
    os.symlink("v1", src / "current")
    assert push_candidate(["--repo", str(bare_repo), "--from", str(src), "--path", "web"]) == 0
    modes = tree_modes(bare_repo, "candidate")
    assert modes == {"web/current": "120000", "web/v1/deploy.yaml": "100644"}
    assert git("--git-dir", str(bare_repo), "show", "candidate:web/current") == "v1"

    pin = ["--repo", str(bare_repo), "--path", "web", "--image", image]
    assert push_candidate(pin) == 0
    assert tree_modes(bare_repo, "candidate") == modes
    assert files_at(bare_repo, "candidate")["web/v1/deploy.yaml"] == deployment(image)
