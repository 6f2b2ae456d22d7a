"""steps.lib.gitrepo: validation, credentials and the pure tree/message decisions."""

from __future__ import annotations

import base64
import os
import random
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_git import init_bare, seed

from steps.lib.errors import ExternalError, UsageError
from steps.lib.git_env import config_env, git_credentials
from steps.lib.git_failures import PushOutcome, TransientGitError, classify_failure, classify_push
from steps.lib.git_inputs import (
    Identity,
    RepoLocation,
    parse_identity,
    parse_repo,
    validate_branch,
    validate_subpath,
)
from steps.lib.git_messages import format_message, parse_trailers
from steps.lib.git_retry import Attempt, PushReport, push_with_retry
from steps.lib.git_trees import Change, diff_states, merge_subtree
from steps.lib.gitrepo import Workspace
from steps.lib.retry import CONTENTION, FAILURE, RETRY_AFTER_CAP, backoff_delay

# ----------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("https://github.com/o/env.git", "https"),
        ("http://127.0.0.1:8080/env.git", "http"),
        ("ssh://git@github.com/o/env.git", "ssh"),
        ("git@github.com:o/env.git", "ssh"),
        ("file:///srv/env.git", "file"),
    ],
)
def test_parse_repo_accepts_the_usual_forms(text: str, kind: str) -> None:
    assert parse_repo(text).kind == kind


def test_parse_repo_scopes_the_origin_for_headers() -> None:
    assert parse_repo("https://Git.Example.com:8443/o/e").origin == "https://git.example.com:8443/"


def test_parse_repo_accepts_an_existing_local_path(tmp_path: Path) -> None:
    repo = init_bare(tmp_path / "env.git")
    location = parse_repo(str(repo))
    assert location == RepoLocation("local", str(repo.resolve()))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("https://user:secret@github.com/o/e", "credentials"),
        ("https://x-access-token@github.com/o/e", "user name"),
        ("ext::sh -c touch% /tmp/pwned", "transport"),
        ("--upload-pack=touch /tmp/pwned", "'-'"),
        ("ftp://example.com/e", "scheme"),
        ("https:///nohost", "no host"),
        ("https://example.com/a b", "whitespace"),
        ("/no/such/repository/here", "no such"),
    ],
)
def test_parse_repo_rejects(text: str, words: str) -> None:
    with pytest.raises(UsageError, match="--repo") as caught:
        parse_repo(text)
    assert words in caught.value.message


@pytest.mark.parametrize("name", ["candidate", "env/prod", "release-1.2"])
def test_validate_branch_accepts(name: str) -> None:
    assert validate_branch(name, "--branch") == name


@pytest.mark.parametrize(
    "name", ["-f", "--force", "a..b", "a b", "refs/heads/x", "HEAD", "x.lock", "a~1", ""]
)
def test_validate_branch_rejects(name: str) -> None:
    with pytest.raises(UsageError, match="--branch"):
        validate_branch(name, "--branch")


@pytest.mark.parametrize(
    ("path", "expected"),
    [(None, ""), (".", ""), ("", ""), ("web", "web"), ("a//b/", "a/b"), ("./a/./b", "a/b")],
)
def test_validate_subpath_normalises(path: str | None, expected: str) -> None:
    assert validate_subpath(path) == expected


@pytest.mark.parametrize("path", ["../x", "a/../../b", "/etc", "a/.git/x", "-rf", "a\\b"])
def test_validate_subpath_rejects(path: str) -> None:
    with pytest.raises(UsageError, match="--path"):
        validate_subpath(path)


def test_identity_parsing_and_the_root_rule() -> None:
    ident = parse_identity("Deploy Bot <bot@example.test>", "--committer", allow_root=False)
    assert (ident.name, ident.email) == ("Deploy Bot", "bot@example.test")
    assert ident.as_env("COMMITTER") == {
        "GIT_COMMITTER_NAME": "Deploy Bot",
        "GIT_COMMITTER_EMAIL": "bot@example.test",
    }
    for bad in ("root <root@localhost>", "Someone <root@host>"):
        with pytest.raises(UsageError, match="root"):
            parse_identity(bad, "--committer", allow_root=False)
    with pytest.raises(UsageError, match="Name <email>"):
        parse_identity("no email here", "--author")


# ----------------------------------------------------------------- credentials


def test_token_goes_into_a_scoped_header_in_the_environment_only() -> None:
    location = parse_repo("https://git.example.test/o/env.git")
    environ = {"GIT_TOKEN": "tok-abcdef123456", "GIT_USERNAME": "bot"}
    with git_credentials(location, environ) as env:
        count = int(env["GIT_CONFIG_COUNT"])
        settings = {env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"] for i in range(count)}
    header = settings["http.https://git.example.test/.extraHeader"]
    assert header == "Authorization: Basic " + base64.b64encode(b"bot:tok-abcdef123456").decode()
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert not any("tok-abcdef123456" in value for value in env.values())


def test_default_username_is_x_access_token() -> None:
    location = parse_repo("https://git.example.test/o/env.git")
    with git_credentials(location, {"GIT_TOKEN": "tok-abcdef123456"}) as env:
        values = [v for k, v in env.items() if k.startswith("GIT_CONFIG_VALUE")]
    expected = base64.b64encode(b"x-access-token:tok-abcdef123456").decode()
    assert any(expected in v for v in values)


def test_config_env_appends_to_settings_already_in_the_environment() -> None:
    env = config_env([("a.b", "1")], {"GIT_CONFIG_COUNT": "2"})
    assert env == {"GIT_CONFIG_KEY_2": "a.b", "GIT_CONFIG_VALUE_2": "1", "GIT_CONFIG_COUNT": "3"}


def test_ssh_key_is_a_private_file_outside_the_workspace_removed_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAfake\n-----END OPENSSH PRIVATE KEY-----"
    environ = {"GIT_SSH_KEY": key, "GIT_KNOWN_HOSTS": "github.com ssh-ed25519 AAAA"}
    with git_credentials(parse_repo("git@github.com:o/env.git"), environ) as env:
        command = shlex.split(env["GIT_SSH_COMMAND"])
        key_file = Path(command[command.index("-i") + 1])
        assert key_file.read_text() == key + "\n"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        assert tmp_path not in key_file.parents
        assert "StrictHostKeyChecking=yes" in command
    assert not key_file.exists()
    assert not key_file.parent.exists()
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- pure decisions

A, B, C = ("100644", "a" * 40), ("100644", "b" * 40), ("100644", "c" * 40)


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "merged", "conflicts"),
    [
        # nobody else moved: a mirror of ours
        ({"x": A, "y": A}, {"x": B, "z": C}, {"x": A, "y": A}, {"x": B, "z": C}, []),
        # they added a file we never had: it survives
        ({}, {"mine": A}, {"theirs": B}, {"mine": A, "theirs": B}, []),
        # they deleted a file we did not touch: it stays deleted
        ({"x": A, "y": A}, {"x": A, "y": B}, {"y": A}, {"y": B}, []),
        # we deleted, they did not touch it
        ({"x": A}, {}, {"x": A, "t": C}, {"t": C}, []),
        # both made the same change
        ({"x": A}, {"x": B}, {"x": B}, {"x": B}, []),
        # both changed the same file differently
        ({"x": A}, {"x": B}, {"x": C}, {"x": C}, ["x"]),
        # they deleted what we changed
        ({"x": A}, {"x": B}, {}, {}, ["x"]),
        # both added the same path differently
        ({}, {"x": B}, {"x": C}, {"x": C}, ["x"]),
    ],
)
def test_merge_subtree(
    base: dict[str, tuple[str, str]],
    ours: dict[str, tuple[str, str]],
    theirs: dict[str, tuple[str, str]],
    merged: dict[str, tuple[str, str]],
    conflicts: list[str],
) -> None:
    assert merge_subtree(base, ours, theirs) == (merged, conflicts)


def test_diff_states() -> None:
    changes = diff_states({"a": A, "b": A, "c": A}, {"a": A, "b": B, "d": C})
    assert changes == [Change("M", "b"), Change("D", "c"), Change("A", "d")]


def test_message_round_trips_its_trailers() -> None:
    message = format_message(
        "Deploy  web\n", "body line", [("Build-Id", "b-1"), ("Image", "r/x@sha256:0"), ("E", "")]
    )
    assert message.startswith("Deploy web\n\nbody line\n\n")
    assert parse_trailers(message) == [("Build-Id", "b-1"), ("Image", "r/x@sha256:0")]


def test_parse_trailers_needs_a_trailer_paragraph() -> None:
    assert parse_trailers("Subject: only") == []
    assert parse_trailers("Subject\n\nnot: a\nbut prose here") == []


def test_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(7)
    for policy in (FAILURE, CONTENTION):
        for attempt in range(1, 20):
            ceiling = min(policy.cap, policy.base * 2 ** (attempt - 1))
            delays = [backoff_delay(attempt, rng, policy) for _ in range(50)]
            assert all(ceiling / 2 <= d <= ceiling for d in delays)
            assert len(set(delays)) > 1
    # FAILURE: 0.5 s, then 1, 2, 4, 8, 8 ... (ceilings); a Retry-After wins, capped.
    assert [FAILURE.ceiling(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff_delay(3, rng, retry_after=2.5) == 2.5
    assert backoff_delay(3, rng, retry_after=600) == RETRY_AFTER_CAP


@pytest.mark.parametrize(
    ("status", "stdout", "stderr", "kind"),
    [
        (0, "To x\n \tX:refs/heads/c\t[up to date]\nDone\n", "", "ok"),
        (0, "*\tX:refs/heads/c\t[new branch]\n", "", "ok"),
        (1, "!\tX:refs/heads/c\t[rejected] (fetch first)\n", "", "moved"),
        (1, "!\tX:refs/heads/c\t[rejected] (non-fast-forward)\n", "", "moved"),
        (1, "!\tX:refs/heads/c\t[remote rejected] (failed to update ref)\n", "", "moved"),
        (1, "!\tX:refs/heads/c\t[remote rejected] (pre-receive hook declined)\n", "", "denied"),
        (128, "", "fatal: unable to access 'http://h/': Failed to connect", "network"),
        (128, "", "fatal: Authentication failed for 'https://h/'", "auth"),
        (128, "", "fatal: repository 'http://h/x/' not found", "missing"),
    ],
)
def test_classify_push(status: int, stdout: str, stderr: str, kind: str) -> None:
    assert classify_push(status, stdout, stderr, "refs/heads/c").kind == kind


def test_classify_failure_reads_the_last_line() -> None:
    outcome = classify_failure("warning: x\nfatal: the remote end hung up unexpectedly\n")
    assert outcome.kind == "network"
    assert outcome.detail == "fatal: the remote end hung up unexpectedly"


# ----------------------------------------------------------------- the workspace


def test_workspace_builds_a_commit_touching_only_the_subdirectory(
    tmp_path: Path, git_env: dict[str, str]
) -> None:
    repo = init_bare(tmp_path / "env.git")
    tip = seed(repo, "c", {"web/a": "1", "web/b": "2", "api/x": "3"}, tmp_path / "w")
    source = tmp_path / "src"
    source.mkdir()
    (source / "a").write_text("1")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    (source / ".git").mkdir()
    location = parse_repo(str(repo))
    with git_credentials(location) as env, Workspace(location, env) as ws:
        assert ws.fetch_branch("c") == tip
        assert ws.fetch_branch("missing") is None
        old = ws.read_state(tip, "web")
        new = ws.hash_directory(source)
        assert sorted(new) == ["a", "run.sh"]
        assert new["run.sh"][0] == "100755"
        tree = ws.write_tree(tip, "web", old, new)
        listing = ws.check("ls-tree", "-r", "--name-only", tree).split()
        assert listing == ["api/x", "web/a", "web/run.sh"]
        directory = ws.directory
        config = (directory / "config").read_text()
    assert not directory.exists()
    assert "token" not in config.lower()


def test_workspace_reads_commits_and_blobs_with_git_alone(
    tmp_path: Path, git_env: dict[str, str]
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "small.yaml").write_bytes(b"a: 1\n\nb: 2")  # blank line, no final newline
    (source / "binary").write_bytes(b"\x00\n\xff" * 3)
    (source / "big.yaml").write_bytes(b"x" * 100)
    location = parse_repo(str(init_bare(tmp_path / "env.git")))
    with git_credentials(location) as env, Workspace(location, env) as ws:
        state = ws.hash_directory(source)
        shas = [state[name][1] for name in ("small.yaml", "binary", "big.yaml")]
        blobs = ws.read_blobs([*shas, shas[0], "f" * 40], limit=99)
        assert blobs == {shas[0]: b"a: 1\n\nb: 2", shas[1]: b"\x00\n\xff" * 3}
        tree = ws.write_tree(None, "", {}, state)
        message = "Deploy \u00e9t\u00e9\n\nbody\n\nGitops-Step: test\n"
        author = Identity("Ada L\u00f6vel\u00e4ce", "ada@example.test")
        commit = ws.commit_tree(tree, None, message, author, Identity("bot", "bot@x.test"))
        assert ws.message_of(commit) == message
        assert ws.author_of(commit) == author


def test_help_does_not_import_gitpython() -> None:
    code = (
        "import sys\n"
        "import steps.push_candidate, steps.promote\n"
        "import steps.lib.gitrepo, steps.lib.git_env, steps.lib.git_retry\n"
        "for m in (steps.push_candidate, steps.promote):\n"
        "    try:\n"
        "        m.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'git' not in sys.modules, 'GitPython was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert "--repo" in done.stdout


def test_git_credentials_leave_a_callers_sigterm_handler_alone() -> None:
    """verify-rollout handles SIGTERM itself; the notes push must not replace that."""
    import signal

    def callers(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    location = parse_repo("https://git.example.test/o/env")
    previous = signal.signal(signal.SIGTERM, callers)
    try:
        with git_credentials(location, {}):
            assert signal.getsignal(signal.SIGTERM) is callers
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with git_credentials(location, {}):
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, callers)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


class RacingRemote:
    """A remote where every push but the ``lands_on``-th loses the race."""

    def __init__(self, lands_on: int) -> None:
        self.location = parse_repo("https://git.example.test/env.git")
        self.lands_on, self.pushes = lands_on, 0

    def push(self, commit: str, branch: str) -> PushOutcome:
        self.pushes += 1
        return PushOutcome("ok" if self.pushes == self.lands_on else "moved", "fetch first")


def retry_loop(remote: RacingRemote, budget: float, max_attempts: int) -> PushReport:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def prepare(attempt: int) -> Attempt:
        now[0] += 0.2  # fetch, build the commit
        return Attempt(f"{attempt:040x}", None)

    return push_with_retry(
        remote,  # type: ignore[arg-type]
        "candidate",
        prepare,
        max_attempts=max_attempts,
        contention_budget=budget,
        rng=random.Random(1),
        sleep=sleep,
        clock=lambda: now[0],
    )


def test_lost_races_do_not_use_up_the_failure_budget() -> None:
    remote = RacingRemote(lands_on=30)
    report = retry_loop(remote, budget=300, max_attempts=2)
    assert (report.status, report.attempts) == ("pushed", 30)


def test_lost_races_stop_when_the_time_budget_is_spent() -> None:
    remote = RacingRemote(lands_on=1000)
    with pytest.raises(ExternalError, match="other writers kept moving it for 20 s"):
        retry_loop(remote, budget=20, max_attempts=2)
    assert 5 < remote.pushes < 100


def test_failures_still_stop_after_max_attempts() -> None:
    tried: list[int] = []

    def prepare(attempt: int) -> Attempt:
        tried.append(attempt)
        raise TransientGitError("fetch: connection reset")

    with pytest.raises(ExternalError, match="after 3 attempts: fetch: connection reset"):
        push_with_retry(
            RacingRemote(lands_on=1),  # type: ignore[arg-type]
            "candidate",
            prepare,
            max_attempts=3,
            sleep=lambda seconds: None,
        )
    assert tried == [1, 2, 3]
