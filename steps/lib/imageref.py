"""Container image references: parsing, matching and formatting (pure).

Follows the grammar of the distribution reference library
(``[registry/]path[:tag][@digest]``). Matching compares canonical
repositories, so ``nginx``, ``docker.io/library/nginx`` and
``index.docker.io/library/nginx`` are the same image, while the text written
back is always what the user asked for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")

DOCKER_HUB = "docker.io"


class InvalidReference(ValueError):
    """Text that is not an image reference."""


@dataclass(frozen=True)
class ImageRef:
    """An image reference as written: repository, optional tag and digest."""

    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        match = _REFERENCE.match(text)
        if not match:
            raise InvalidReference(f"{text!r} is not an image reference")
        name = match.group("name")
        if len(name) > 255:
            raise InvalidReference(f"{text!r}: repository name longer than 255 characters")
        path = split_domain(name)[1]
        if not all(re.fullmatch(_COMPONENT, part) for part in path.split("/")):
            raise InvalidReference(f"{text!r}: repository path must be lowercase")
        digest = match.group("digest")
        if digest and digest.startswith("sha256:") and not _SHA256.match(digest):
            raise InvalidReference(f"{text!r}: a sha256 digest has 64 lowercase hex digits")
        return cls(name, match.group("tag"), digest)

    @property
    def registry(self) -> str:
        """The registry host (``docker.io`` when none is written)."""
        return split_domain(self.repository)[0]

    @property
    def path(self) -> str:
        """The repository path on its registry (``library/nginx`` for ``nginx``)."""
        return split_domain(self.repository)[1]

    def with_digest(self, digest: str, *, keep_tag: bool) -> ImageRef:
        return ImageRef(self.repository, self.tag if keep_tag else None, digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def split_domain(repository: str) -> tuple[str, str]:
    """Split a repository into registry host and path, as Docker does."""
    first, sep, rest = repository.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, rest
    else:
        domain, path = DOCKER_HUB, repository
    if domain in ("index.docker.io", "registry-1.docker.io"):
        domain = DOCKER_HUB
    if domain == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return domain, path


def canonical(repository: str) -> str:
    """The canonical form of a repository name (no tag or digest)."""
    domain, path = split_domain(repository)
    return f"{domain}/{path}"
