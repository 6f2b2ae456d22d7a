"""verify-rollout's manifests and plan: read and check the objects, then decide the
order, namespaces and scope they are applied in (no cluster access but reading scopes)."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from steps.lib.errors import ManifestError, UsageError

LOCAL_ONLY_GROUPS = ("kustomize.config.k8s.io", "config.kubernetes.io")
CRD_GROUP_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")
NAMESPACE_GROUP_KIND = ("", "Namespace")


# --------------------------------------------------------------------------- manifests


class ObjRef(NamedTuple):
    group: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    def qualified(self) -> str:
        return f"{self.namespace}/{self}" if self.namespace else str(self)


class Manifest(NamedTuple):
    """One object from a manifest file, and where it was written."""

    obj: dict[str, Any]
    source: str
    line: int | None

    @property
    def api_version(self) -> str:
        return str(self.obj.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def group(self) -> str:
        """``apps`` of ``apps/v1``; empty for the core group (``v1``)."""
        return self.api_version.rpartition("/")[0]

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        value = (self.obj.get("metadata") or {}).get("namespace")
        return str(value) if value else None

    @property
    def ref(self) -> ObjRef:
        return ObjRef(self.group, self.kind, self.namespace, self.name)

    def error(self, problem: str) -> ManifestError:
        return ManifestError(self.source, self.line, f"{self.kind}/{self.name}: {problem}")


def refuse_kustomization(directory: Path, flag: str, files: Sequence[Path]) -> None:
    """A Kustomize directory is a recipe, not what runs: refuse it, naming the file.

    Applying its YAML raw would apply the base without the overlay's patches
    (and send ``kustomization.yaml`` itself to the server); what is applied
    must be what was reviewed in Git, rendered by the app build.
    """
    from steps.lib.manifest_files import KUSTOMIZATION_FILENAMES

    for path in files:
        if path.name in KUSTOMIZATION_FILENAMES:
            raise UsageError(
                f"{flag} {directory}: {path} is a Kustomize file, and verify-rollout "
                "expects rendered manifests (render the overlay in the app build: "
                "gitops-update-manifest --kustomize ENV=DIR)"
            )


def load_manifests(directory: Path, flag: str = "--manifests") -> list[Manifest]:
    """Every object in the YAML files under ``directory`` (or in one file)."""
    from steps.lib.manifest_files import YAML_SUFFIXES, walk_files

    if directory.is_file():
        files = [directory]
    elif directory.is_dir():
        found = list(walk_files(directory))
        refuse_kustomization(directory, flag, [Path(root, name) for root, name in found])
        files = [Path(root, name) for root, name in found if name.endswith(YAML_SUFFIXES)]
    else:
        raise UsageError(f"{flag} {directory}: no such file or directory")
    manifests: list[Manifest] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(str(path), None, f"cannot read: {exc}") from None
        manifests.extend(parse_manifests(str(path), text))
    if not manifests:
        raise UsageError(f"{flag} {directory}: no Kubernetes objects found in *.yaml / *.yml")
    check_unique(manifests)
    return manifests


def parse_manifests(display: str, text: str) -> list[Manifest]:
    """Objects in one file's text, ``List`` kinds expanded, local-only kinds dropped (pure)."""
    import yaml

    from steps.lib.yaml_nodes import compose_documents

    found: list[Manifest] = []
    for node in compose_documents(display, text):
        line = node.start_mark.line + 1
        loader = yaml.SafeLoader("")
        try:
            obj = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise ManifestError(display, line, f"invalid YAML: {exc}") from None
        if obj is None:
            continue
        if not isinstance(obj, dict):
            raise ManifestError(display, line, "not a Kubernetes object (a mapping)")
        items = obj.get("items") if str(obj.get("kind", "")).endswith("List") else None
        for item in items if isinstance(items, list) else [obj]:
            manifest = Manifest(item if isinstance(item, dict) else {}, display, line)
            check_object(manifest)
            if manifest.group not in LOCAL_ONLY_GROUPS:
                found.append(manifest)
    return found


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def check_object(manifest: Manifest) -> None:
    obj = manifest.obj
    where = ManifestError
    if not obj:
        raise where(manifest.source, manifest.line, "a List item that is not an object")
    for key in ("apiVersion", "kind"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise where(manifest.source, manifest.line, f"object without {key}")
        if not value.isprintable() or any(c.isspace() for c in value):
            # Quoted: a line break or control byte must not reach the terminal.
            raise where(
                manifest.source,
                manifest.line,
                f"{key} {value!r} has a space or a control character: no cluster serves it",
            )
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not metadata.get("name"):
        if isinstance(metadata, dict) and metadata.get("generateName"):
            raise manifest.error("generateName cannot be applied (server-side apply needs a name)")
        raise where(manifest.source, manifest.line, f"{manifest.kind} without metadata.name")
    if not isinstance(metadata["name"], str):
        raise manifest.error("metadata.name is not a string")
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or not _DNS_SUBDOMAIN.match(namespace)
    ):
        raise manifest.error(f"metadata.namespace {namespace!r} is not a valid namespace name")


def check_unique(manifests: Sequence[Manifest]) -> None:
    seen: dict[ObjRef, Manifest] = {}
    for manifest in manifests:
        first = seen.setdefault(manifest.ref, manifest)
        if first is not manifest:
            raise manifest.error(f"also defined at {first.source}:{first.line}")


# --------------------------------------------------------------------------- planning (pure)


class Scope(NamedTuple):
    """What the planner knows about one kind: served now, or defined by a manifest CRD."""

    namespaced: bool
    served: bool


class Planned(NamedTuple):
    manifest: Manifest
    obj: dict[str, Any]
    namespace: str | None
    phase: Phase
    served: bool

    @property
    def ref(self) -> ObjRef:
        return ObjRef(self.manifest.group, self.manifest.kind, self.namespace, self.manifest.name)


class Phase(enum.IntEnum):
    """The order objects are applied in: what later objects need exists first."""

    CRDS = 0
    NAMESPACES = 1
    CLUSTER_SCOPED = 2
    NAMESPACED = 3


def crd_scopes(manifests: Sequence[Manifest]) -> dict[tuple[str, str], Scope]:
    """Kinds defined by CRDs among the manifests: (apiVersion, kind) -> scope."""
    found: dict[tuple[str, str], Scope] = {}
    for manifest in manifests:
        if (manifest.group, manifest.kind) != CRD_GROUP_KIND:
            continue
        spec = manifest.obj.get("spec") or {}
        group = spec.get("group")
        kind = (spec.get("names") or {}).get("kind")
        namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        for version in spec.get("versions") or []:
            if isinstance(version, Mapping) and version.get("served", True):
                found[(f"{group}/{version.get('name')}", str(kind))] = Scope(namespaced, False)
    return found


def plan(
    manifests: Sequence[Manifest],
    scopes: Mapping[tuple[str, str], Scope],
    *,
    namespace: str,
    namespace_given: bool,
    allow_cluster_scoped: bool,
    labels: Mapping[str, str],
) -> list[Planned]:
    """Order, namespace and label every object; refuse what may not be applied (pure)."""
    planned: list[Planned] = []
    for manifest in manifests:
        scope = scopes.get((manifest.api_version, manifest.kind))
        if scope is None:
            raise manifest.error(
                f"{manifest.api_version} {manifest.kind} is not served by the cluster "
                "and no CustomResourceDefinition in the manifests defines it"
            )
        obj = _with_labels(manifest.obj, labels)
        group_kind = (manifest.group, manifest.kind)
        if not scope.namespaced:
            if manifest.namespace:
                raise manifest.error(f"{manifest.kind} is cluster-scoped but has a namespace")
            if group_kind == CRD_GROUP_KIND:
                phase = Phase.CRDS
            elif group_kind == NAMESPACE_GROUP_KIND:
                phase = Phase.NAMESPACES
            else:
                if not allow_cluster_scoped:
                    raise manifest.error(
                        "cluster-scoped: pass --allow-cluster-scoped to apply "
                        "cluster-scoped kinds other than Namespace and CRD"
                    )
                phase = Phase.CLUSTER_SCOPED
            planned.append(Planned(manifest, obj, None, phase, scope.served))
            continue
        own = manifest.namespace
        if own and namespace_given and own != namespace:
            raise manifest.error(f"namespace {own} differs from --namespace {namespace}")
        target = own or namespace
        obj.setdefault("metadata", {})["namespace"] = target
        planned.append(Planned(manifest, obj, target, Phase.NAMESPACED, scope.served))
    planned.sort(key=lambda p: p.phase)  # stable: file order within a phase
    return planned


def _with_labels(obj: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    copied = dict(obj)
    metadata = dict(copied.get("metadata") or {})
    if labels:
        metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    copied["metadata"] = metadata
    return copied
