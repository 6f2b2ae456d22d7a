"""Credentials for a container registry, found where Cloud Build and Docker keep them.

Google's hosts (Container Registry, Artifact Registry) take an access token
from Application Default Credentials; any other host, what Docker's
config.json says: a credential helper for that host, an ``auths`` entry, or
the default store. Nothing found means anonymous. Every secret read here goes
through ``register_secret`` at once, and no message is built from one.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.lib.errors import ExternalError, UsageError
from steps.lib.imageref import DOCKER_HUB
from steps.lib.output import redact, register_secret

GOOGLE_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
GOOGLE_USERNAME = "oauth2accesstoken"
ADC_SOURCE = "Application Default Credentials"
ANONYMOUS = "anonymous"

DOCKER_HUB_API = "registry-1.docker.io"
# The key ``docker login`` writes for Docker Hub, also what helpers expect.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = {DOCKER_HUB, "index.docker.io", DOCKER_HUB_API}

HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    """A username and secret for one registry, and where they came from."""

    username: str
    password: str = field(repr=False)
    source: str

    def basic_header(self) -> str:
        encoded = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        register_secret(encoded)
        return f"Basic {encoded}"


def is_google_registry(host: str) -> bool:
    """Container Registry and Artifact Registry hosts, which take ADC."""
    name = host.split(":", 1)[0].lower()
    return (
        name == "gcr.io"
        or name.endswith(".gcr.io")
        or name.endswith("-docker.pkg.dev")
        or name.endswith(".pkg.dev")
    )


class CredentialSources:
    """Credentials to offer each registry, looked up once (None: anonymous)."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._found: dict[str, Credentials | None] = {}
        self._google: Credentials | None = None

    def lookup(self, registry: str) -> Credentials | None:
        if registry not in self._found:
            if is_google_registry(registry):
                self._found[registry] = self._google_credentials(registry)
            else:
                self._found[registry] = self._docker_credentials(registry)
        return self._found[registry]

    def source(self, registry: str) -> str:
        """Where the credentials offered to ``registry`` came from, for messages."""
        credentials = self._found.get(registry)
        return credentials.source if credentials else ANONYMOUS

    def _google_credentials(self, registry: str) -> Credentials:
        """An access token from Application Default Credentials, shared by Google hosts."""
        if self._google is not None:
            return self._google
        try:
            import google.auth
            import google.auth.exceptions
            import google.auth.transport.urllib3
            import urllib3
        except ImportError:
            raise UsageError(
                f"resolving digests on {registry} needs google-auth: install gitops-steps[manifest]"
            ) from None
        try:
            credentials, _ = google.auth.default(scopes=GOOGLE_SCOPES)
            request = google.auth.transport.urllib3.Request(urllib3.PoolManager())  # type: ignore[no-untyped-call]
            credentials.refresh(request)  # type: ignore[no-untyped-call]
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise UsageError(
                f"no {ADC_SOURCE} to read {registry}: run the step on Cloud Build or GCE with "
                "a service account, set GOOGLE_APPLICATION_CREDENTIALS to a key file, or run "
                f"`gcloud auth application-default login` ({redact(str(exc))})"
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            raise UsageError(
                f"{ADC_SOURCE} could not be refreshed for {registry}: {redact(str(exc))}"
            ) from None
        except google.auth.exceptions.TransportError as exc:
            raise ExternalError(
                f"could not reach Google to refresh {ADC_SOURCE} for {registry}: {redact(str(exc))}"
            ) from None
        token = str(credentials.token or "")
        register_secret(token)
        if not token:
            raise UsageError(f"{ADC_SOURCE} gave no access token for {registry}")
        self._google = Credentials(GOOGLE_USERNAME, token, ADC_SOURCE)
        return self._google

    def _docker_config_path(self) -> Path:
        directory = self._environ.get("DOCKER_CONFIG")
        if directory:
            return Path(directory) / "config.json"
        home = self._environ.get("HOME")
        return (Path(home) if home else Path.home()) / ".docker" / "config.json"

    def docker_config_hint(self) -> str:
        return f"looked in Docker config {self._display(self._docker_config_path())}"

    def _display(self, path: Path) -> str:
        home = self._environ.get("HOME")
        if home and path.is_relative_to(home):
            return str(Path("~") / path.relative_to(home))
        return str(path)

    def _docker_credentials(self, registry: str) -> Credentials | None:
        """Credentials from Docker's config.json: a helper, an ``auths`` entry, a store."""
        path = self._docker_config_path()
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read Docker config {self._display(path)}: {exc}") from None
        if not isinstance(config, dict):
            raise UsageError(f"Docker config {self._display(path)} is not a JSON object")
        names = _config_keys(registry)
        helpers = config.get("credHelpers") or {}
        for key, helper in helpers.items() if isinstance(helpers, dict) else ():
            if _normalise_config_key(key) in names and helper:
                return self._run_helper(str(helper), registry, path)
        auths = config.get("auths") or {}
        for key, entry in auths.items() if isinstance(auths, dict) else ():
            if _normalise_config_key(key) in names and isinstance(entry, dict):
                found = _auth_entry(entry, f"Docker config {self._display(path)}", key)
                if found:
                    return found
        store = config.get("credsStore")
        if store:
            return self._run_helper(str(store), registry, path)
        return None

    def _run_helper(self, name: str, registry: str, config: Path) -> Credentials | None:
        """Ask ``docker-credential-<name> get``; "not found" means anonymous."""
        program = f"docker-credential-{name}"
        source = f"{program} (from Docker config {self._display(config)})"
        executable = shutil.which(program, path=self._environ.get("PATH", os.environ.get("PATH")))
        if executable is None:
            raise UsageError(
                f"Docker config {self._display(config)} names the credential helper {program} "
                f"for {registry}, but it is not on PATH"
            )
        server = DOCKER_HUB_CONFIG_KEY if registry in _DOCKER_HUB_ALIASES else registry
        try:
            done = subprocess.run(
                [executable, "get"],
                input=server,
                capture_output=True,
                text=True,
                timeout=HELPER_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ExternalError(f"{program} did not answer within {HELPER_TIMEOUT:.0f}s") from None
        except OSError as exc:
            raise UsageError(f"cannot run {program}: {exc.strerror}") from None
        if done.returncode != 0:
            # Helpers exit non-zero with this text when they hold nothing for the host.
            if "credentials not found" in (done.stdout + done.stderr).lower():
                return None
            raise UsageError(
                f"{program} failed for {registry} (exit {done.returncode}): "
                f"{redact(done.stderr.strip() or done.stdout.strip())[:300]}"
            )
        try:
            answer = json.loads(done.stdout)
            username, secret = str(answer["Username"]), str(answer["Secret"])
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{program} gave an answer that is not credentials JSON") from None
        register_secret(secret)
        if not secret:
            return None
        return Credentials(username, secret, source)


def _normalise_config_key(key: str) -> str:
    """``https://host/v1/`` -> ``host``, as Docker matches config.json keys."""
    text = key.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    return text.split("/", 1)[0].lower()


def _config_keys(registry: str) -> set[str]:
    name = registry.lower()
    return set(_DOCKER_HUB_ALIASES) if name in _DOCKER_HUB_ALIASES else {name}


def _auth_entry(entry: Mapping[str, Any], source: str, key: str) -> Credentials | None:
    """Credentials from one ``auths`` entry: ``auth`` (base64) or username/password."""
    encoded = entry.get("auth")
    if encoded:
        register_secret(str(encoded))
        try:
            decoded = base64.b64decode(str(encoded), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise UsageError(
                f"{source}: auths[{key!r}].auth is not base64 of user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        register_secret(password)
        if not sep:
            raise UsageError(f"{source}: auths[{key!r}].auth is not base64 of user:password")
        return Credentials(username, password, source) if password else None
    user, secret = entry.get("username"), entry.get("password")
    if user and secret:
        register_secret(str(secret))
        return Credentials(str(user), str(secret), source)
    return None
