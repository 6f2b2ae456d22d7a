"""``--image`` rules: what one flag matches (a repository, renamed or not, or a
Flux image policy) and what it sets. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from steps.lib.errors import UsageError
from steps.lib.imageref import ImageRef, InvalidReference, canonical

MARKER_NEEDLE = b'"$imagepolicy"'
_POLICY_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class ImageRule:
    """One ``--image`` flag: what it matches and what it sets.

    ``requested`` is the reference as given; ``target`` is what is written,
    which differs from ``requested`` once its tag is resolved to a digest.
    A target without tag or digest renames the repository and keeps the rest.
    """

    spec: str
    requested: ImageRef
    match: str | None = None
    policy: str | None = None
    target: ImageRef | None = None

    @property
    def new(self) -> ImageRef:
        return self.target or self.requested

    @property
    def repositories(self) -> tuple[str, ...]:
        """Canonical repositories this rule applies to.

        A renaming rule (``OLD=NEW``) also applies to images already renamed,
        so that running the same build again is a no-op rather than an error.
        """
        if self.match is None:
            return ()
        renamed = canonical(self.new.repository)
        return (self.match,) if renamed == self.match else (self.match, renamed)

    @property
    def needles(self) -> tuple[bytes, ...]:
        """Text every file that this rule can change must contain."""
        if self.policy:
            return (MARKER_NEEDLE,)
        return tuple(repo.rsplit("/", 1)[-1].encode() for repo in self.repositories)

    def resolved(self, target: ImageRef) -> ImageRule:
        return replace(self, target=target)

    def applied_to(self, old: ImageRef) -> ImageRef:
        """The reference a container holding ``old`` gets from this rule."""
        new = self.new
        if new.tag is None and new.digest is None:
            return ImageRef(new.repository, old.tag, old.digest)
        return new


def parse_image_rule(spec: str) -> ImageRule:
    """Parse ``REF``, ``OLD=REF`` or ``ns:name=REF`` (a Flux image policy)."""
    old, sep, new = spec.partition("=")
    if not sep:
        old, new = "", spec
    elif not old:
        raise UsageError(f"--image {spec}: nothing before '=' (give OLD=REF, or just REF)")
    elif not new:
        raise UsageError(f"--image {spec}: nothing after '=' (give OLD=REF)")
    try:
        requested = ImageRef.parse(new)
    except InvalidReference as exc:
        raise UsageError(f"--image {spec}: {exc}") from None
    if not old:
        if requested.tag is None and requested.digest is None:
            raise UsageError(
                f"--image {spec}: give a tag or a digest (for example {new}:v1), "
                "or OLD=NEW to rename a repository"
            )
        return ImageRule(spec, requested, match=canonical(requested.repository))
    if _POLICY_NAME.match(old):
        return ImageRule(spec, requested, policy=old)
    try:
        old_ref = ImageRef.parse(old)
    except InvalidReference as exc:
        raise UsageError(f"--image {spec}: {exc}") from None
    if old_ref.tag or old_ref.digest:
        raise UsageError(f"--image {spec}: OLD must be a repository without a tag or digest")
    return ImageRule(spec, requested, match=canonical(old_ref.repository))


def check_rules_distinct(rules: Sequence[ImageRule]) -> None:
    """Two rules for the same image would make the result depend on order."""
    seen: dict[str, str] = {}
    for rule in rules:
        for key in (rule.policy,) if rule.policy else rule.repositories:
            if key in seen and seen[key] != rule.spec:
                raise UsageError(f"--image {rule.spec} and --image {seen[key]} both set {key}")
            seen[key] = rule.spec
