"""Lossless image pinning in YAML text (pure: text in, text out): where the
images are, and what each ``--image`` rule changes.

Why not round-trip through a YAML library: every round-tripping updater
rewrites something the user did not ask to change (indentation, quotes, a
leading ``---``, a missing final newline...). Instead we *locate* the scalars
to change with PyYAML's composer (``yaml_nodes``: where each node starts and
ends in the text), describe each change as data, and splice only those
characters (``manifest_splice``). A second parse of the result then proves
that the new text means exactly the old one plus the intended changes,
before anything is written.

The flow for one file:
``plan_file`` -> ``FilePlan(changes, edits)`` -> ``apply_edits`` -> ``verify_plan``.
Images are found in pod specs (``pod_specs``), kustomization ``images:`` and
Flux setter comments (``flux_markers``).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from steps.lib.flux_markers import plan_markers
from steps.lib.image_rules import MARKER_NEEDLE, ImageRule
from steps.lib.imageref import ImageRef, InvalidReference, canonical
from steps.lib.manifest_splice import Change, FilePlan, set_scalar, update_mapping_key
from steps.lib.pod_specs import CONTAINER_LISTS, POD_SPEC_PATHS
from steps.lib.yaml_nodes import (
    compose_documents,
    get_key,
    get_path,
    kind_and_name,
    objects_in,
    str_value,
)


def plan_file(
    path: str,
    text: str,
    rules: Sequence[ImageRule],
    *,
    kustomization: bool = False,
) -> FilePlan:
    """Work out every change ``rules`` make to one file, without writing."""
    documents = compose_documents(path, text)
    plan = FilePlan(path, documents)
    image_rules = [rule for rule in rules if rule.match]
    policy_rules = {rule.policy: rule for rule in rules if rule.policy}
    for document in documents:
        if image_rules:
            for obj in objects_in(document):
                _plan_containers(plan, text, obj, image_rules)
                is_kustomization = _is_kustomization(obj) or (
                    kustomization and obj is document and get_key(obj, "kind") is None
                )
                if is_kustomization:
                    _plan_kustomization(plan, text, obj, image_rules)
    if policy_rules and MARKER_NEEDLE.decode() in text:
        plan_markers(plan, text, documents, policy_rules)
    plan.edits.sort(key=lambda edit: edit.start)
    plan.changes.sort(key=lambda change: change.line)
    return plan


def _is_kustomization(obj: yaml.Node) -> bool:
    """A Kustomization, or a kustomize Component (its ``images:`` mean the same)."""
    kind = str_value(get_key(obj, "kind"))
    if kind == "Kustomization":
        return True
    api_version = str_value(get_key(obj, "apiVersion")) or ""
    return kind == "Component" and api_version.startswith("kustomize.config.k8s.io/")


def _plan_containers(plan: FilePlan, text: str, obj: yaml.Node, rules: Sequence[ImageRule]) -> None:
    kind, name = kind_and_name(obj)
    spec_path = POD_SPEC_PATHS.get(kind)
    if spec_path is None:
        return
    pod_spec = get_path(obj, spec_path)
    for list_key in CONTAINER_LISTS:
        containers = get_key(pod_spec, list_key)
        if not isinstance(containers, yaml.SequenceNode):
            continue
        for container in containers.value:
            image_node = get_key(container, "image")
            value = str_value(image_node)
            if image_node is None or value is None:
                continue
            try:
                old = ImageRef.parse(value)
            except InvalidReference:
                continue
            rule = _rule_for(rules, old.repository)
            if rule is None:
                continue
            plan.matched.add(rule.spec)
            new = str(rule.applied_to(old))
            container_name = str_value(get_key(container, "name")) or "?"
            label = "container" if list_key == "containers" else list_key[:-1]
            if new != value:
                assert isinstance(image_node, yaml.ScalarNode)
                set_scalar(plan, text, image_node, new)
                plan.changes.append(
                    Change(
                        plan.path,
                        image_node.start_mark.line + 1,
                        kind,
                        name,
                        f"{label} {container_name}",
                        value,
                        new,
                        rule.spec,
                    )
                )


def _rule_for(rules: Sequence[ImageRule], repository: str) -> ImageRule | None:
    wanted = canonical(repository)
    return next((rule for rule in rules if wanted in rule.repositories), None)


def _plan_kustomization(
    plan: FilePlan, text: str, obj: yaml.Node, rules: Sequence[ImageRule]
) -> None:
    images = get_key(obj, "images")
    if not isinstance(images, yaml.SequenceNode):
        return
    for entry in images.value:
        name = str_value(get_key(entry, "name"))
        if not isinstance(entry, yaml.MappingNode) or name is None:
            continue
        try:
            ImageRef.parse(name)
        except InvalidReference:
            continue
        rule = _rule_for(rules, name)
        if rule is None:
            continue
        plan.matched.add(rule.spec)
        current = {key: str_value(get_key(entry, key)) for key in ("newName", "newTag", "digest")}
        old = ImageRef(current["newName"] or name, current["newTag"], current["digest"])
        new = rule.applied_to(old)
        wanted: dict[str, str | None] = {"newTag": new.tag, "digest": new.digest}
        if current["newName"] is not None or canonical(new.repository) != canonical(name):
            wanted["newName"] = new.repository
        updates = {key: value for key, value in wanted.items() if current.get(key) != value}
        if not updates:
            continue
        for key in ("newName", "newTag", "digest"):
            if key in updates:
                update_mapping_key(plan, text, entry, key, updates[key])
        plan.mapping_updates[id(entry)] = updates
        plan.changes.append(
            Change(
                plan.path,
                entry.start_mark.line + 1,
                "Kustomization",
                kind_and_name(obj)[1],
                f"images[{name}]",
                str(old),
                str(new),
                rule.spec,
            )
        )
