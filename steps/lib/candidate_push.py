"""push-candidate's work: the candidate commit, built on whatever tip the branch has.

``steps/push_candidate.py`` holds the flags and reads them into a ``Config``;
this module decides the new subdirectory (a mirror of ``--from``, or the
``--image`` edits) with a three-way merge against what others pushed
meanwhile, writes the commit with its trailers and pushes it, retrying on a
new tip. The commit message is a pure function of the changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.lib.errors import CheckFailed, UsageError
from steps.lib.git_env import git_credentials, hardened_env
from steps.lib.git_inputs import Identity, RepoLocation
from steps.lib.git_messages import format_message, tool_trailers, trailer_values
from steps.lib.git_retry import Attempt, push_with_retry
from steps.lib.git_trees import State, diff_states, join_path, merge_subtree
from steps.lib.gitrepo import Workspace
from steps.lib.imageref import ImageRef, InvalidReference
from steps.lib.output import say
from steps.lib.provenance import Provenance

STEP = "push-candidate"
"""The stage's name: in its messages and its commits' ``Gitops-Step`` trailer."""
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
MAX_LISTED_CHANGES = 30


@dataclass(frozen=True)
class Config:
    location: RepoLocation
    branch: str
    base_branch: str | None
    source: Path | None
    images: tuple[str, ...]
    subdir: str
    message: str | None
    max_attempts: int
    author: Identity | None
    committer: Identity
    allow_empty: bool
    allow_unmatched: bool
    provenance: Provenance


# --------------------------------------------------------------------------- pure decisions

_DIGEST_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:\[\]-]*@sha256:[0-9a-f]{64}")


def image_references(text: str) -> list[str]:
    """Digest-pinned image references in a manifest, as ``repository@sha256:...``."""
    found: dict[str, None] = {}
    for match in _DIGEST_REF.finditer(text):
        try:
            ref = ImageRef.parse(match.group(0))
        except InvalidReference:
            continue
        if ref.digest:
            found[f"{ref.repository}@{ref.digest}"] = None
    return list(found)


def is_manifest(path: str) -> bool:
    return path.lower().endswith(MANIFEST_SUFFIXES)


def short_image(reference: str) -> str:
    repository, _, digest = reference.partition("@")
    return f"{repository.rsplit('/', 1)[-1]}@{digest[:19]}"


def default_subject(subdir: str, images: Sequence[str], source_commit: str | None) -> str:
    where = subdir or "the repository"
    if images:
        named = ", ".join(short_image(i) for i in images[:3])
        more = f" and {len(images) - 3} more" if len(images) > 3 else ""
        return f"Deploy {named}{more} to {where}"
    if source_commit:
        return f"Update {where} from {source_commit[:12]}"
    return f"Update {where}"


def candidate_message(
    config: Config,
    changes: Sequence[Any],
    images: Sequence[str],
    changed_images: Sequence[str],
) -> str:
    """Subject, body and trailers of a candidate commit."""
    provenance = config.provenance
    if config.message:
        subject, _, extra = config.message.strip().partition("\n")
    else:
        named = changed_images or (
            [str(ImageRef.parse(s.rpartition("=")[2])) for s in config.images]
        )
        subject, extra = default_subject(config.subdir, named, provenance.commit_sha), ""
    body_lines = [extra.strip()] if extra.strip() else []
    if provenance.repo_name or provenance.commit_sha:
        origin = provenance.repo_name or "source"
        body_lines.append(f"Source: {origin}@{provenance.commit_sha or 'unknown'}")
    if changes:
        body_lines.append(f"Changed in {config.subdir or '/'}:")
        body_lines += [f"  {c.kind} {c.path}" for c in changes[:MAX_LISTED_CHANGES]]
        if len(changes) > MAX_LISTED_CHANGES:
            body_lines.append(f"  ... and {len(changes) - MAX_LISTED_CHANGES} more")
    trailers = [
        ("Source-Repo", provenance.repo_name or ""),
        ("Source-Commit", provenance.commit_sha or ""),
        ("Build-Id", provenance.build_id or ""),
    ]
    trailers += [("Image", image) for image in images]
    return format_message(subject, "\n".join(body_lines), trailers, STEP)


# --------------------------------------------------------------------------- side effects


def source_author(source: Path | None, commit: str | None) -> Identity | None:
    """The author of the source commit, when ``source`` is inside its checkout."""
    if source is None or not commit or not re.fullmatch(r"[0-9a-fA-F]{7,64}", commit):
        return None
    try:
        shown = subprocess.run(
            ["git", "-C", str(source), "log", "-1", "--format=%an%x00%ae", commit, "--"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=hardened_env(),  # a checkout we were handed: its config runs nothing
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    name, _, email = shown.stdout.strip().partition("\0")
    if shown.returncode != 0 or not name or not email:
        return None
    return Identity(name, email)


def manifest_blobs(workspace: Workspace, state: State) -> dict[str, bytes]:
    """The contents of the manifests in ``state``, read with one ``git``."""
    shas = [sha for path, (mode, sha) in state.items() if is_manifest(path) and mode != "160000"]
    return workspace.read_blobs(shas)


def scan_images(state: State, blobs: Mapping[str, bytes]) -> list[str]:
    """Images referenced by digest in the manifests of ``state`` (contents in ``blobs``)."""
    found: dict[str, None] = {}
    for path in sorted(state):
        content = blobs.get(state[path][1])
        if content is not None and is_manifest(path):
            for ref in image_references(content.decode("utf-8", "replace")):
                found[ref] = None
    return sorted(found)


def edit_images(
    workspace: Workspace, config: Config, parent: str | None
) -> tuple[State, list[Any]]:
    """Check out SUBDIR at ``parent``, pin the images in it, and hash the result."""
    try:
        from steps.lib.manifest_io import update_in_place
    except ImportError:  # pragma: no cover - only in a trimmed image
        raise UsageError("--image mode needs steps.lib.manifest_io") from None
    scratch = Path(tempfile.mkdtemp(prefix="gitops-edit-"))
    try:
        workspace.checkout_subdir(parent, config.subdir, scratch)
        target = scratch / config.subdir if config.subdir else scratch
        if not target.is_dir():
            raise UsageError(f"--path {config.subdir or '/'}: no such directory on {config.branch}")
        edits = update_in_place(
            [target], list(config.images), allow_unmatched=config.allow_unmatched
        )
        return workspace.hash_directory(target), [relative_edit(e, target) for e in edits]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def relative_edit(edit: Any, root: Path) -> dict[str, Any]:
    """An update-manifest change as data, its path relative to SUBDIR."""
    data: dict[str, Any] = dict(edit.as_dict())
    with suppress(ValueError):
        data["path"] = Path(data["path"]).relative_to(root).as_posix()
    return data


class CandidateWriter:
    """Builds the candidate commit on whatever tip the branch has now."""

    def __init__(self, workspace: Workspace, config: Config) -> None:
        self.workspace = workspace
        self.config = config
        self.base: State | None = None
        self.base_tip: str | None = None
        self.ours: State | None = None
        checkout = config.source or Path.cwd()
        author = config.author or source_author(checkout, config.provenance.commit_sha)
        self.author = author or config.committer

    def prepare(self, attempt: int) -> Attempt:
        config, ws = self.config, self.workspace
        tip = ws.fetch_branch(config.branch)
        parent, created = tip, tip is None
        if tip is None and config.base_branch:
            parent = ws.fetch_branch(config.base_branch)
            if parent is not None:
                say(
                    f"{STEP}: {config.branch} does not exist; starting it from {config.base_branch}"
                )
        theirs = ws.read_state(parent, config.subdir)
        edits: list[Any] = []
        if config.images:
            ours, edits = edit_images(ws, config, parent)
            base = theirs
        else:
            if self.ours is None:
                assert config.source is not None
                self.ours = ws.hash_directory(config.source)
                if not self.ours and not config.subdir:
                    raise UsageError(
                        f"--from {config.source}: empty; mirroring it at the repository root "
                        "would delete every file on the branch"
                    )
            if self.base is None:
                self.base, self.base_tip = theirs, parent
            ours, base = self.ours, self.base
        merged, conflicts = merge_subtree(base, ours, theirs)
        if conflicts and self.superseded_attempts_only(parent):
            # Only other attempts of the same source changed these files since
            # we fetched (builds of the same app racing): ours is the newest
            # attempt, so it is recorded on top of theirs.
            who = config.provenance.repo_name
            say(
                f"{STEP}: {', '.join(conflicts)}: changed by other builds of {who}; "
                "this attempt goes on top"
            )
            for path in conflicts:
                if path in ours:
                    merged[path] = ours[path]
                else:
                    merged.pop(path, None)
            conflicts = []
        if conflicts:
            names = ", ".join(join_path(config.subdir, p) for p in conflicts)
            raise CheckFailed(
                f"conflict: {names} changed differently on {config.branch} since this build "
                "started; re-run the build on the new tip"
            )
        changes = diff_states(theirs, merged)
        details: dict[str, Any] = {
            "changes": [c.as_dict() for c in changes],
            "created": created,
            "parent": parent,
        }
        if edits:
            details["edits"] = edits
        if not changes and not created and not config.allow_empty:
            say(f"{STEP}: {config.subdir or '/'} on {config.branch} already matches; nothing to do")
            return Attempt(None, parent, details)
        blobs = manifest_blobs(ws, merged)
        images = scan_images(merged, blobs)
        changed_paths = {c.path for c in changes if c.kind != "D"}
        changed_images = scan_images({p: merged[p] for p in changed_paths}, blobs)
        details["images"] = images
        tree = ws.write_tree(parent, config.subdir, theirs, merged)
        message = candidate_message(config, changes, images, changed_images)
        commit = ws.commit_tree(tree, parent, message, self.author, config.committer)
        summary = ", ".join(f"{c.kind} {c.path}" for c in changes[:5]) or "no file changes"
        say(f"{STEP}: commit {commit[:12]} on {(parent or 'nothing')[:12]}: {summary}")
        return Attempt(commit, parent, details)

    def superseded_attempts_only(self, tip: str | None) -> bool:
        """Whether every commit on --path since our first fetch is an attempt of our source."""
        source = self.config.provenance.repo_name
        if not source or tip is None or self.base_tip is None or self.config.images:
            return False
        commits = self.workspace.commits_between(
            self.config.branch, self.base_tip, tip, self.config.subdir
        )
        if commits is None:
            return False
        return all(
            trailer_values(tool_trailers(message), "Source-Repo") == [source]
            for _, message in commits
        )


def push_candidate(config: Config) -> dict[str, Any]:
    what = f"--from {config.source}" if config.source else f"--image {' '.join(config.images)}"
    say(f"{STEP}: {config.location.url} {config.branch}:{config.subdir or '/'} <- {what}")
    with git_credentials(config.location) as env, Workspace(config.location, env) as workspace:
        writer = CandidateWriter(workspace, config)
        report = push_with_retry(
            workspace, config.branch, writer.prepare, max_attempts=config.max_attempts
        )
    prepared = report.attempt
    result: dict[str, Any] = {
        "status": report.status,
        "repo": config.location.url,
        "branch": config.branch,
        "path": config.subdir,
        "commit": report.landed
        or (prepared.commit if report.status == "pushed" else prepared.parent),
        "attempts": report.attempts,
        **prepared.details,
    }
    if report.status == "pushed":
        tries = f"{report.attempts} attempt(s)"
        say(f"{STEP}: pushed {result['commit']} to {config.branch} after {tries}")
    return result
