"""The environment every ``git`` we run gets: hardening and credentials.

- Hardening: every ``git`` we run, in our repositories or in one we were
  handed (``--from``, ``--source-repo``), runs with settings that disable
  hooks, fsmonitor, signature programs and external transports.
- Credentials: a token travels only in the environment of the ``git``
  processes (``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``
  setting an ``http.<origin>.extraHeader``) and only to that origin: git
  sends extra headers to wherever a redirect leads, so redirects are not
  followed (``http.followRedirects=false``; ``git_failures`` reports one as
  exit 2). An SSH key goes to a private file outside the workspace, removed
  on exit, SIGTERM included (``cleanup_on_sigterm``).
"""

from __future__ import annotations

import base64
import os
import shlex
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from steps.lib.git_inputs import RepoLocation
from steps.lib.output import register_secret, say

DEFAULT_USERNAME = "x-access-token"


def config_env(settings: Sequence[tuple[str, str]], environ: Mapping[str, str]) -> dict[str, str]:
    """Git config passed through the environment, appended to any already there."""
    try:
        start = int(environ.get("GIT_CONFIG_COUNT", "0") or "0")
    except ValueError:
        start = 0
    env: dict[str, str] = {}
    for offset, (key, value) in enumerate(settings):
        env[f"GIT_CONFIG_KEY_{start + offset}"] = key
        env[f"GIT_CONFIG_VALUE_{start + offset}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(settings))
    return env


HARDENED_SETTINGS: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
    ("gpg.ssh.program", "false"),
    ("gpg.x509.program", "false"),
    ("core.pager", "cat"),
    ("protocol.allow", "never"),
    *((f"protocol.{name}.allow", "always") for name in ("file", "git", "ssh", "http", "https")),
    ("protocol.ext.allow", "never"),
)
"""Settings for every ``git`` we run, above any repository's own config: a
repository we were handed (``--from``) must not make us run its programs."""

BASE_SETTINGS: tuple[tuple[str, str], ...] = (
    *HARDENED_SETTINGS,
    ("http.followRedirects", "false"),
    ("http.lowSpeedLimit", "1000"),
    ("http.lowSpeedTime", "60"),
    ("gc.auto", "0"),
    ("advice.detachedHead", "false"),
)


def hardened_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``git`` on a directory we did not create."""
    env_in = os.environ if environ is None else environ
    return {**env_in, **config_env(HARDENED_SETTINGS, env_in), "GIT_TERMINAL_PROMPT": "0"}


class Terminated(SystemExit):
    """SIGTERM arrived: unwind (removing private files) and exit 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


@contextmanager
def cleanup_on_sigterm() -> Iterator[None]:
    """While inside, SIGTERM unwinds like Ctrl-C does, so ``finally`` blocks run.

    It does nothing outside the main thread (only it takes signals) or when
    the caller already handles SIGTERM (verify-rollout unwinds on it too).
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def git_credentials(
    location: RepoLocation, environ: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """The environment the ``git`` processes need to reach ``location``.

    ``GIT_TOKEN`` (user ``GIT_USERNAME``) becomes an ``Authorization`` header
    scoped to the repository's origin; ``GIT_SSH_KEY`` (and
    ``GIT_KNOWN_HOSTS``) become files in a private temporary directory removed
    on exit (SIGTERM included). Otherwise git uses whatever credential helper
    is configured.
    """
    with cleanup_on_sigterm(), _git_credentials(location, environ) as env:
        yield env


@contextmanager
def _git_credentials(
    location: RepoLocation, environ: Mapping[str, str] | None
) -> Iterator[dict[str, str]]:
    env_in = os.environ if environ is None else environ
    settings = list(BASE_SETTINGS)
    env: dict[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}
    token = env_in.get("GIT_TOKEN") or None
    ssh_key = env_in.get("GIT_SSH_KEY") or None
    key_dir: str | None = None
    try:
        if token and location.kind in ("https", "http"):
            register_secret(token)
            user = env_in.get("GIT_USERNAME") or DEFAULT_USERNAME
            basic = base64.b64encode(f"{user}:{token}".encode()).decode()
            register_secret(basic)
            settings.append(
                (f"http.{location.origin}.extraHeader", f"Authorization: Basic {basic}")
            )
        elif token:
            register_secret(token)
        if ssh_key and location.kind == "ssh":
            register_secret(ssh_key)
            key_dir = tempfile.mkdtemp(prefix="gitops-ssh-")
            os.chmod(key_dir, stat.S_IRWXU)
            key_file = Path(key_dir) / "key"
            _write_private(key_file, ssh_key if ssh_key.endswith("\n") else ssh_key + "\n")
            command = [
                "ssh",
                "-i",
                str(key_file),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
            ]
            known_hosts = env_in.get("GIT_KNOWN_HOSTS")
            if known_hosts:
                hosts_file = Path(key_dir) / "known_hosts"
                _write_private(hosts_file, known_hosts + "\n")
                command += ["-o", f"UserKnownHostsFile={hosts_file}"]
                command += ["-o", "StrictHostKeyChecking=yes"]
            else:
                say("warning: GIT_KNOWN_HOSTS is not set; trusting the host key on first use")
                command += ["-o", "StrictHostKeyChecking=accept-new"]
            env["GIT_SSH_COMMAND"] = shlex.join(command)
            env["GIT_SSH_VARIANT"] = "ssh"
        env.update(config_env(settings, env_in))
        yield env
    finally:
        if key_dir:
            shutil.rmtree(key_dir, ignore_errors=True)


def _write_private(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)
