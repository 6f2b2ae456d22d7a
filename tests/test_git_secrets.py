"""The token goes only to the repository's origin and never leaves the process.

Adversarial tests of the git stages (push-candidate, promote, gitops-history)
as separate processes: a Git server that redirects to another origin, a
signal in the middle of a network call, a handed-in checkout whose config
would run a program, and a watch on every file, temporary directory and child
argv for the token.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_git import GIT_PASSWORD, GIT_USER, git, run_cli, write_tree

from steps.lib.git_failures import redirect_error
from steps.lib.git_inputs import RepoLocation
from steps.sandbox.gitserver import GitServer

ENCODED = base64.b64encode(f"{GIT_USER}:{GIT_PASSWORD}".encode()).decode()
SHA = "0123456789abcdef0123456789abcdef01234567"


def token_env(git_env: dict[str, str], tmpdir: Path) -> dict[str, str]:
    tmpdir.mkdir(parents=True, exist_ok=True)
    return {**git_env, "GIT_TOKEN": GIT_PASSWORD, "GIT_USERNAME": GIT_USER, "TMPDIR": str(tmpdir)}


# ----------------------------------------------------------------- redirects


@pytest.fixture
def redirecting(tmp_path: Path) -> Iterator[tuple[GitServer, GitServer]]:
    """The env repo's server answering every request with a 302 to another origin."""
    with (
        GitServer(tmp_path / "other") as other,  # takes anything: what a thief would do
        GitServer(tmp_path / "env", user=GIT_USER, password=GIT_PASSWORD) as env_server,
    ):
        other.init_bare("env.git")
        env_server.init_bare("env.git")
        env_server.redirect_to = other.url
        yield env_server, other


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("steps.push_candidate", ["--from", "out", "--path", "web"]),
        ("steps.promote", ["--commit", SHA, "--path", "web"]),
        ("steps.history", ["--format", "json"]),
    ],
    ids=["push-candidate", "promote", "history"],
)
def test_a_redirect_to_another_origin_is_refused_and_gets_no_token(
    tmp_path: Path,
    redirecting: tuple[GitServer, GitServer],
    git_env: dict[str, str],
    module: str,
    args: list[str],
) -> None:
    env_server, other = redirecting
    workspace = tmp_path / "ws"
    write_tree(workspace / "out", {"deploy.yaml": "kind: ConfigMap\n"})
    env = token_env(git_env, tmp_path / "tmp")
    done = run_cli(module, ["--repo", env_server.repo_url("env.git"), *args], env, workspace)
    assert done.returncode == 2, done.stderr
    assert f"redirects to {other.url}/env.git, another origin" in done.stderr
    assert "refusing to follow it" in done.stderr
    assert other.requests == [] and other.authorized_requests == []
    assert git("--git-dir", str(other.root / "env.git"), "for-each-ref") == ""
    assert GIT_PASSWORD not in done.stderr and ENCODED not in done.stderr


def test_a_redirect_within_the_origin_names_the_url_to_use(tmp_path: Path) -> None:
    with GitServer(tmp_path / "srv") as server:
        server.init_bare("env.git")
        server.redirect_to = server.url + "/moved"
        location = RepoLocation("http", server.repo_url("env.git"), server.url + "/")
        message = redirect_error(location, "fetch").message
    assert f"redirects to {server.url}/moved/env.git; redirects are not followed" in message
    assert "use that URL as --repo" in message


# ----------------------------------------------------------------- SIGTERM


@pytest.fixture
def silent_ssh_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP port on loopback that accepts and never says a word (ssh waits)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = threading.Event()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_fetch_removes_the_key_and_the_private_repositories(
    tmp_path: Path,
    git_env: dict[str, str],
    silent_ssh_server: tuple[int, threading.Event],
    signum: int,
    code: int,
) -> None:
    port, accepted = silent_ssh_server
    private = tmp_path / "tmp"
    env = {
        **token_env(git_env, private),
        "GIT_SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-key\n",
    }
    workspace = tmp_path / "ws"
    write_tree(workspace / "out", {"a.yaml": "a: 1\n"})
    repo = f"ssh://git@127.0.0.1:{port}/env.git"
    proc = subprocess.Popen(
        [sys.executable, "-m", "steps.push_candidate", "--from", "out", "--repo", repo],
        env=env,
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert accepted.wait(60), "ssh never connected"
        made = sorted(p.name.split("-")[1] for p in private.iterdir())
        assert made == ["index", "repo", "ssh"]
        assert [p.name for p in next(private.glob("gitops-ssh-*")).iterdir()] == ["key"]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert list(private.iterdir()) == []


# ----------------------------------------------------------------- hardened git


def signed_checkout(root: Path, marker: Path) -> tuple[Path, str]:
    """A checkout whose HEAD carries a signature and whose config runs a program."""
    git("init", "--quiet", str(root))
    write_tree(root, {"out/a.yaml": "a: 1\n"})
    git("add", "--all", cwd=root)
    git("commit", "--quiet", "-m", "app", cwd=root)
    raw = git("cat-file", "commit", "HEAD", cwd=root)
    header, _, message = raw.partition("\n\n")
    signature = "gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEz\n -----END PGP SIGNATURE-----"
    forged = f"{header}\n{signature}\n\n{message}"
    stored = subprocess.run(
        ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
        cwd=root,
        input=forged,
        capture_output=True,
        text=True,
        check=True,
    )
    sha = stored.stdout.strip()
    git("update-ref", "HEAD", sha, cwd=root)
    program = root.parent / "evil.sh"
    program.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n')
    program.chmod(0o755)
    for key, value in [
        ("log.showSignature", "true"),
        ("gpg.program", str(program)),
        ("core.fsmonitor", str(program)),
        ("core.hooksPath", str(root.parent)),
    ]:
        git("config", key, value, cwd=root)
    return root, sha


def test_a_handed_in_checkout_runs_none_of_its_programs(
    tmp_path: Path, bare_repo: Path, git_env: dict[str, str]
) -> None:
    marker = tmp_path / "ran"
    checkout, sha = signed_checkout(tmp_path / "app", marker)
    # The trap is real: plain git runs the program for this log.
    subprocess.run(["git", "-C", str(checkout), "log", "-1", sha], env=git_env, check=True)
    assert marker.exists()
    marker.unlink()

    env = {**git_env, "COMMIT_SHA": sha}
    done = run_cli(
        "steps.push_candidate", ["--repo", str(bare_repo), "--from", "out"], env, checkout
    )
    assert done.returncode == 0, done.stderr
    assert not marker.exists()
    author = git("--git-dir", str(bare_repo), "log", "-1", "--format=%an", "candidate")
    assert author.strip() == "Test Author"  # the checkout was still read


# ----------------------------------------------------------------- the token stays in memory


def git_spy(bin_dir: Path, log_dir: Path) -> Path:
    """A ``git`` first on PATH: records its argv and any token found under $TMPDIR."""
    bin_dir.mkdir()
    log_dir.mkdir()
    real = subprocess.run(["which", "git"], capture_output=True, text=True, check=True)
    spy = bin_dir / "git"
    spy.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {log_dir}/argv\n'
        f'grep -rlaF -e {GIT_PASSWORD} -e {ENCODED} "$TMPDIR" >> {log_dir}/leaks 2>/dev/null\n'
        f'exec {real.stdout.strip()} "$@"\n'
    )
    spy.chmod(0o755)
    return spy


def test_the_token_reaches_no_file_no_tmpdir_no_argv_and_no_output(
    tmp_path: Path, git_auth_server: GitServer, git_env: dict[str, str]
) -> None:
    spy_logs = tmp_path / "spy"
    git_spy(tmp_path / "bin", spy_logs)
    private = tmp_path / "tmp"
    workspace = tmp_path / "ws"
    builder = tmp_path / "builder"
    write_tree(workspace / "out", {"a.yaml": "a: 1\n"})
    env = {
        **token_env(git_env, private),
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{git_env['PATH']}",
        "BUILDER_OUTPUT": str(builder),
    }
    url = git_auth_server.repo_url("env.git")
    runs = [
        run_cli("steps.push_candidate", ["--repo", url, "--from", "out"], env, workspace),
    ]
    sha = git("--git-dir", str(git_auth_server.root / "env.git"), "rev-parse", "candidate").strip()
    runs.append(run_cli("steps.promote", ["--repo", url, "--commit", sha], env, workspace))
    runs.append(run_cli("steps.history", ["--repo", url], env, workspace))
    # A server that says the token back (in a hook's message) is masked too.
    git_auth_server.reject_pushes = f"denied for token {GIT_PASSWORD} ({ENCODED})"
    write_tree(workspace / "out", {"a.yaml": "a: 2\n"})
    args = ["--repo", url, "--from", "out", "--result-file", "r.json"]
    refused = run_cli("steps.push_candidate", args, env, workspace)
    assert [r.returncode for r in runs] == [0, 0, 0], runs[0].stderr + runs[1].stderr
    assert refused.returncode == 3, refused.stderr
    assert "remote: denied for token [REDACTED] ([REDACTED])" in refused.stderr

    argv = (spy_logs / "argv").read_text()
    assert "push --porcelain" in argv and "fetch" in argv  # the spy saw the git calls
    leaks = (spy_logs / "leaks").read_text() if (spy_logs / "leaks").exists() else ""
    assert leaks == ""
    assert GIT_PASSWORD not in argv and ENCODED not in argv
    texts = [r.stdout + r.stderr for r in [*runs, refused]]
    texts += [p.read_text() for p in [*workspace.rglob("*"), *builder.rglob("*")] if p.is_file()]
    texts += [p.read_text() for p in (git_auth_server.root / "env.git").glob("config")]
    for text in texts:
        assert GIT_PASSWORD not in text and ENCODED not in text
    assert list(private.iterdir()) == []


def test_a_pre_receive_hooks_message_reaches_the_user(
    tmp_path: Path, git_server: GitServer, git_env: dict[str, str]
) -> None:
    git_server.reject_pushes = "production is frozen until Monday (ticket OPS-12)"
    write_tree(tmp_path / "out", {"a.yaml": "a: 1\n"})
    args = ["--repo", git_server.repo_url("env.git"), "--from", "out"]
    done = run_cli("steps.push_candidate", args, git_env, tmp_path)
    assert done.returncode == 3
    assert "remote: production is frozen until Monday (ticket OPS-12)" in done.stderr
    assert "pre-receive hook declined" in done.stderr


def test_an_ssh_failure_says_why(tmp_path: Path, git_env: dict[str, str]) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    write_tree(tmp_path / "out", {"a.yaml": "a: 1\n"})
    env = {**git_env, "GIT_SSH_KEY": "not-a-key"}
    args = ["--repo", f"ssh://git@127.0.0.1:{port}/env.git", "--from", "out", "--max-attempts", "1"]
    done = run_cli("steps.push_candidate", args, env, tmp_path)
    assert done.returncode == 3
    assert f"port {port}: Connection refused" in done.stderr.splitlines()[-1]
