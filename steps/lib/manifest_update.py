"""update-manifest's work: image rules, then read only the files that can contain
an image (a cheap byte search), plan every change, verify, write all or
nothing; render mode (``--from``/``--to``) with ``*.tpl`` templates and
Kustomize overlays; tags resolved to digests. ``steps/update_manifest.py``
holds the flags.
"""

from __future__ import annotations

import shutil
import tempfile
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from steps.lib.errors import ManifestError, UsageError
from steps.lib.image_rules import ImageRule
from steps.lib.manifest_files import KUSTOMIZATION_FILENAMES, walk_files
from steps.lib.manifest_io import (
    FileOutcome,
    Outcome,
    check_unmatched,
    decode,
    is_manifest_name,
    parse_rules,
    plan_in_place,
    plan_text,
    read_bytes,
    write_in_place,
)
from steps.lib.manifest_splice import Change
from steps.lib.output import normal_mode, say, warn
from steps.lib.templates import parse_assignments, render_template
from steps.lib.yaml_nodes import compose_documents

TEMPLATE_SUFFIX = ".tpl"


# --------------------------------------------------------------------------- reading


def plan_render(
    source: Path, rules: Sequence[ImageRule], values: dict[str, str]
) -> tuple[Outcome, set[str]]:
    """Render every manifest and template under ``source``; write nothing."""
    if not source.is_dir():
        raise UsageError(f"--from {source}: not a directory")
    needles = {needle for rule in rules for needle in rule.needles}
    outcome = Outcome(files=[], matched=set())
    used: set[str] = set()
    outputs: dict[str, str] = {}
    for root, name in walk_files(source):
        path = Path(root, name)
        relative = path.relative_to(source).as_posix()
        is_template = name.endswith(TEMPLATE_SUFFIX)
        if not (is_template or is_manifest_name(name)):
            outcome.skipped.append(relative)
            continue
        display = str(path)
        output_name = relative[: -len(TEMPLATE_SUFFIX)] if is_template else relative
        if output_name in outputs:
            raise UsageError(
                f"--from {source}: {outputs[output_name]} and {relative} "
                f"would both be written as {output_name}"
            )
        outputs[output_name] = relative
        data = read_bytes(path, display)
        text, bom = decode(display, data)
        template = text
        if is_template:
            text, names = render_template(display, text, values)
            used |= names
        new: bytes | None = None
        changes: list[Change] = []
        try:
            # Every file written to --to must parse, whether or not it changes.
            documents = compose_documents(display, text)
            if is_template:
                check_values_stay_values(display, template, values, documents)
            encoded = text.encode("utf-8")
            if any(needle in encoded for needle in needles):
                new, changes = plan_text(display, text, bom, rules, outcome.matched)
        except ManifestError as exc:
            if not is_template:
                raise
            raise ManifestError(display, exc.line, f"after rendering: {exc.problem}") from None
        rendered = new if new is not None else bom + text.encode("utf-8")
        outcome.files.append(
            FileOutcome(display, path, data, rendered, changes, output_name=output_name)
        )
    return outcome, used


def check_values_stay_values(
    display: str, template: str, values: dict[str, str], rendered: Sequence[yaml.Node]
) -> None:
    """A ``--set`` value may fill in a scalar, never add keys, items or documents.

    The template rendered with plain neutral words must have the same shape
    (documents, mappings and their sizes, sequences and their lengths) as the
    real rendering; ``a, injected: true`` in a flow mapping would not.
    """
    neutral = {name: f"gitopsvalue{number}" for number, name in enumerate(values)}
    plain, _ = render_template(display, template, neutral)
    try:
        expected = compose_documents(display, plain)
    except ManifestError:
        return  # the template needs its real values to parse: nothing to compare with
    if [_shape(node) for node in expected] != [_shape(node) for node in rendered]:
        raise ManifestError(
            display,
            None,
            "a --set value changes the YAML's structure (keys, items or documents), "
            "not just a value; quote the placeholder in the template or fix the value",
        )


def _shape(node: yaml.Node) -> Any:
    """The tree without its scalars' text (depth bounded by compose_documents)."""
    if isinstance(node, yaml.SequenceNode):
        return ["seq", *(_shape(item) for item in node.value)]
    if isinstance(node, yaml.MappingNode):
        return ["map", *((_shape(key), _shape(value)) for key, value in node.value)]
    return "scalar"


# --------------------------------------------------------------------------- writing


def check_render_paths(source: Path, destination: Path) -> Path:
    """``--to`` apart from ``--from`` (never it, above it or inside it); its absolute path.

    ``--clean`` replaces ``--to`` whole: over or above the sources, that deletes them.
    """
    src, dst = source.resolve(), destination.resolve()
    if dst == src or dst in src.parents or src in dst.parents:
        relation = "is" if dst == src else "contains" if dst in src.parents else "is inside"
        raise UsageError(
            f"--to {destination}: {relation} --from {source}; render into a separate directory"
        )
    if dst.parent == dst:
        raise UsageError(f"--to {destination}: cannot replace the root directory")
    return dst


def write_render(files: Sequence[FileOutcome], destination: Path, clean: bool) -> None:
    """Build the output next to ``destination`` (absolute), then swap it into place."""
    if destination.exists() and not destination.is_dir():
        raise UsageError(f"--to {destination}: exists and is not a directory")
    if destination.is_dir() and any(destination.iterdir()) and not clean:
        raise UsageError(f"--to {destination}: not empty (pass --clean to replace its contents)")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
    staging.chmod(normal_mode(directory=True))  # it becomes --to: not mkdtemp's 0700
    try:
        for outcome in files:
            assert outcome.new is not None and outcome.output_name is not None
            target = staging / outcome.output_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(outcome.new)
            shutil.copymode(outcome.source, target)
        if destination.exists():
            old = destination.with_name(f".{destination.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            destination.rename(old)
            staging.rename(destination)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(destination)
    except OSError as exc:
        raise UsageError(f"--to {destination}: cannot write: {exc.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------- overlays


def parse_overlays(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``ENV=DIR`` pairs: ENV names the output directory, DIR the overlay under --from."""
    overlays: list[tuple[str, str]] = []
    for spec in specs:
        env, sep, directory = spec.partition("=")
        if not sep or not env or not directory:
            raise UsageError(
                f"--kustomize {spec}: expected ENV=DIR (e.g. staging=overlays/staging)"
            )
        if "/" in env or env.startswith("."):
            raise UsageError(f"--kustomize {spec}: ENV {env!r} must be one directory name")
        if any(env == seen for seen, _ in overlays):
            raise UsageError(f"--kustomize {spec}: environment {env} given twice")
        parts = [part for part in directory.split("/") if part not in ("", ".")]
        if directory.startswith("/") or ".." in parts or not parts:
            raise UsageError(f"--kustomize {spec}: DIR must be a directory under --from")
        overlays.append((env, "/".join(parts)))
    return overlays


def _kubectl() -> str:
    """The kubectl whose Kustomize renders the overlays (a UsageError naming the
    image to use when there is none)."""
    from steps.lib.kustomize import kubectl_binary

    return kubectl_binary()


def render_overlays(
    source: Path,
    planned: Outcome,
    overlays: Sequence[tuple[str, str]],
    rules: Sequence[ImageRule],
    kubectl: str,
) -> Outcome:
    """Each overlay rendered by Kustomize into ``ENV/manifests.yaml``, images pinned.

    Pin, render, pin again: the tree (templates filled, images pinned in
    Deployments, patches and ``images:`` entries alike) is written to a
    private directory and rendered there, then the rendered text is pinned
    by the same rules, so an image an overlay sets some other way is pinned
    too. What is recorded is exactly what verify-rollout will apply.
    """
    from steps.lib.kustomize import kustomize_version, render_overlay

    version = kustomize_version(kubectl)
    outcome = Outcome(
        files=[], matched=set(planned.matched), skipped=planned.skipped, upstream=planned.changes
    )
    with tempfile.TemporaryDirectory(prefix="gitops-kustomize-") as private:
        tree = Path(private)
        for planned_file in planned.files:
            assert planned_file.new is not None and planned_file.output_name is not None
            target = tree / planned_file.output_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(planned_file.new)
        for env, directory in overlays:
            display = f"{source / directory}"
            say(f"rendering {display} with kustomize {version} (kubectl {kubectl})")
            text = render_overlay(kubectl, tree, directory, source)
            header = (
                f"# Rendered by gitops-update-manifest from {directory} with kustomize "
                f"{version}: what the {env} environment applies. Do not edit.\n"
            )
            rendered = header + text
            output_name = f"{env}/manifests.yaml"
            new, changes = plan_text(output_name, rendered, b"", rules, outcome.matched)
            content = new if new is not None else rendered.encode("utf-8")
            kustomization = next(
                (
                    source / directory / name
                    for name in sorted(KUSTOMIZATION_FILENAMES)
                    if (source / directory / name).is_file()
                ),
                source / directory,
            )
            outcome.files.append(
                FileOutcome(
                    output_name, kustomization, b"", content, changes, output_name=output_name
                )
            )
    return outcome


# --------------------------------------------------------------------------- digests


def resolve_digests(
    rules: Sequence[ImageRule], *, insecure_registries: Sequence[str], keep_tag: bool
) -> list[ImageRule]:
    """Pin each rule's tag to the digest the registry serves for it now."""
    from steps.lib.registry import RegistryClient

    client = RegistryClient(insecure_registries=insecure_registries)
    resolved: list[ImageRule] = []
    for rule in rules:
        ref = rule.requested
        if ref.digest is not None or ref.tag is None:
            resolved.append(rule)
            continue
        digest = client.resolve_digest(ref)
        target = ref.with_digest(digest, keep_tag=keep_tag)
        say(f"resolved {ref} -> {target}")
        resolved.append(rule.resolved(target))
    return resolved


def _flatten(groups: Sequence[Sequence[str]] | None) -> list[str]:
    return [item for group in groups or () for item in group]


def update_manifests(args: Namespace) -> dict[str, Any]:
    """Check the flags against each other, plan every change, verify, write; the result."""
    in_place: list[str] = args.in_place or []
    source: str | None = args.source
    if bool(in_place) == bool(source):
        raise UsageError("give either --in-place PATH... or --from DIR --to DIR")
    if source and not args.to:
        raise UsageError("--from needs --to DIR")
    if in_place and args.to:
        raise UsageError("--to only goes with --from")
    specs = _flatten(args.image)
    if in_place and not specs:
        raise UsageError("--in-place needs at least one --image")
    assignments = _flatten(args.values)
    if in_place and assignments:
        raise UsageError("--set only applies to templates rendered with --from")
    overlays = parse_overlays(_flatten(args.kustomize))
    if overlays and not source:
        raise UsageError("--kustomize only goes with --from DIR --to DIR")
    # Before any registry call: an image without Kustomize is refused at once.
    kubectl = _kubectl() if overlays else ""
    rules = parse_rules(specs)
    values = parse_assignments(assignments)
    if args.resolve_digests:
        rules = resolve_digests(
            rules,
            insecure_registries=_flatten(args.insecure_registry),
            keep_tag=args.keep_tag,
        )
    elif args.keep_tag:
        raise UsageError("--keep-tag only goes with --resolve-digests")

    if source:
        check_render_paths(Path(source), Path(args.to))
    if in_place:
        outcome = plan_in_place([Path(p) for p in in_place], rules)
    else:
        outcome, used = plan_render(Path(source or "."), rules, values)
        for name in sorted(set(values) - used):
            warn(f"--set {name} is used by no template")
        if overlays:
            outcome = render_overlays(Path(source or "."), outcome, overlays, rules, kubectl)
    check_unmatched(rules, outcome.matched, args.allow_unmatched)

    for change in outcome.changes:
        say(change.describe())
    changed = outcome.changed_files
    if args.dry_run:
        say(f"dry run: {len(outcome.changes)} change(s) in {len(changed)} file(s); nothing written")
    elif in_place:
        write_in_place(changed)
        say(f"{len(outcome.changes)} change(s) in {len(changed)} file(s)")
    else:
        destination = Path(args.to)
        absolute = check_render_paths(Path(source or "."), destination)
        write_render(outcome.files, absolute, args.clean)
        say(
            f"rendered {len(outcome.files)} file(s) into {destination} "
            f"with {len(outcome.changes)} image change(s)"
        )
        if outcome.skipped:
            say(f"skipped {len(outcome.skipped)} file(s) that are not YAML or *.tpl")
    result: dict[str, Any] = {
        "status": "changed" if outcome.changes else "unchanged",
        "mode": "in-place" if in_place else "render",
        "dry_run": bool(args.dry_run),
        "images": [
            {"spec": rule.spec, "requested": str(rule.requested), "pinned": str(rule.new)}
            for rule in rules
        ],
        "files_changed": [f.display for f in outcome.files if f.changes],
        "changes": [change.as_dict() for change in outcome.changes],
    }
    if not in_place:
        result["output_dir"] = args.to
        result["files_written"] = len(outcome.files)
        result["skipped"] = outcome.skipped
    return result
