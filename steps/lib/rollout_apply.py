"""verify-rollout's writes to the cluster: server-side dry run, server-side apply in
phase order (what was applied, for a half-applied report), and pruning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from steps.lib.errors import ManifestError
from steps.lib.output import say
from steps.lib.rollout_plan import (
    CRD_GROUP_KIND,
    NAMESPACE_GROUP_KIND,
    Manifest,
    ObjRef,
    Phase,
    Planned,
    Scope,
    crd_scopes,
)

if TYPE_CHECKING:
    from steps.lib import rollout_rules as rules
    from steps.lib.kube import ApiError, KubeApi, Resource
    from steps.lib.live_record import InventoryItem, LiveRecord


# --------------------------------------------------------------------------- apply


class Target:
    """One applied object the wait follows (the wait keeps its judgement in ``verdict``).

    A plain class, as every record on the path to the first write: a dataclass
    costs that path its import (inspect, ast, dis) and a few ``exec`` calls per class.
    """

    __slots__ = ("applied_generation", "live", "ref", "resource", "verdict")

    def __init__(
        self,
        ref: ObjRef,
        resource: Resource,
        applied_generation: int | None,
        live: dict[str, Any],
        verdict: rules.Verdict | None = None,
    ) -> None:
        self.ref = ref
        self.resource = resource
        self.applied_generation = applied_generation
        self.live = live
        self.verdict = verdict

    def __repr__(self) -> str:
        return f"Target({self.ref.qualified()}, generation {self.applied_generation})"


def scopes_for(api: KubeApi, manifests: Sequence[Manifest]) -> dict[tuple[str, str], Scope]:
    """Ask discovery about each kind; fall back to CRDs among the manifests."""
    from steps.lib.builtin_kinds import built_in
    from steps.lib.parallel import run_all

    defined = crd_scopes(manifests)
    scopes: dict[tuple[str, str], Scope] = {}
    # Discovery of each group version at once (none for GA built-in kinds, whose
    # answer is known); the loop below reads the cache.
    versions = sorted({m.api_version for m in manifests if built_in(m.api_version, m.kind) is None})
    for outcome in run_all(api.resources, versions):
        if isinstance(outcome, BaseException):
            raise outcome
    for manifest in manifests:
        key = (manifest.api_version, manifest.kind)
        if key in scopes:
            continue
        served = api.resource(*key)
        if served is not None:
            scopes[key] = Scope(served.namespaced, True)
        elif key in defined:
            scopes[key] = defined[key]
    return scopes


def missing_namespaces(api: KubeApi, planned: Sequence[Planned]) -> set[str]:
    """Namespaces the manifests create that do not exist yet."""
    created = {p.manifest.name for p in planned if p.phase == Phase.NAMESPACES}
    return {ns for ns in created if api.get(f"/api/v1/namespaces/{ns}") is None}


def server_dry_run(api: KubeApi, planned: Sequence[Planned]) -> None:
    """Dry-run every object; ManifestError naming each refused one (nothing changed)."""
    from steps.lib.kube import ApiError
    from steps.lib.parallel import run_all

    # Dry runs change nothing and do not depend on each other: all at once.
    resources = [_resource(api, item) for item in planned]
    answers = run_all(
        lambda index: api.apply(resources[index], planned[index].obj, dry_run=True),
        range(len(planned)),
    )
    refused: list[ManifestError] = []
    for item, answer in zip(planned, answers, strict=True):
        if isinstance(answer, ApiError):
            error = item.manifest.error(f"refused by the server (dry run): {_message(answer)}")
            say(f"error: {error.message}")
            refused.append(error)
        elif isinstance(answer, BaseException):
            raise answer
    if refused:
        first = refused[0]
        more = f" (and {len(refused) - 1} more, above)" if len(refused) > 1 else ""
        raise ManifestError(first.path, first.line, first.problem + more)


def _message(exc: ApiError) -> str:
    return f"{exc.message} (HTTP {exc.status})" if exc.status else exc.message


def _resource(api: KubeApi, item: Planned) -> Resource:
    resource = api.resource(item.manifest.api_version, item.manifest.kind)
    if resource is None:
        raise item.manifest.error(f"{item.manifest.api_version} {item.manifest.kind} is not served")
    return resource


class ApplyProgress:
    """What one apply has changed so far, to say (and undo) when it stops half-way."""

    __slots__ = ("applied", "waiting")

    def __init__(self) -> None:
        self.applied: list[ObjRef] = []
        self.waiting = False
        """True once every object is applied and the wait has begun."""

    @property
    def half_applied(self) -> bool:
        return bool(self.applied) and not self.waiting


def apply_objects(
    api: KubeApi, planned: Sequence[Planned], progress: ApplyProgress | None = None
) -> list[Target]:
    from steps.lib.kube import ApiError

    progress = progress if progress is not None else ApplyProgress()
    targets: list[Target] = []
    for item in planned:
        resource = _resource(api, item)
        try:
            live = api.apply(resource, item.obj)
        except ApiError as exc:
            raise item.manifest.error(f"refused by the server: {_message(exc)}") from None
        progress.applied.append(item.ref)
        generation = (live.get("metadata") or {}).get("generation")
        say(f"applied {item.ref.qualified()}")
        targets.append(
            Target(item.ref, resource, generation if isinstance(generation, int) else None, live)
        )
    return targets


# --------------------------------------------------------------------------- prune


NEVER_PRUNED = {CRD_GROUP_KIND, NAMESPACE_GROUP_KIND}


def prune_candidates(
    found: Sequence[tuple[InventoryItem, str]], keep: set[tuple[str, str, str | None, str]]
) -> list[tuple[InventoryItem, str]]:
    """Labelled objects no longer in the manifests (pure). ``keep``: group, kind, ns, name."""
    out = []
    for item, item_uid in found:
        group = item.api_version.rsplit("/", 1)[0] if "/" in item.api_version else ""
        if (group, item.kind) in NEVER_PRUNED:
            continue
        if (group, item.kind, item.namespace, item.name) not in keep:
            out.append((item, item_uid))
    return out


def prune(
    api: KubeApi, record: str, planned: Sequence[Planned], previous: LiveRecord | None
) -> list[str]:
    """Delete objects labelled with ``record`` that the manifests no longer have."""
    from steps.lib.live_record import InventoryItem, inventory_labels, inventory_selector

    kinds: dict[tuple[str, str], None] = {}
    namespaces: set[str | None] = {p.namespace for p in planned}
    for p in planned:
        kinds[(p.manifest.api_version, p.manifest.kind)] = None
    for item in previous.inventory if previous else ():
        kinds[(item.api_version, item.kind)] = None
        namespaces.add(item.namespace)
    selector = [("labelSelector", inventory_selector(record))]
    found: list[tuple[InventoryItem, str]] = []
    for api_version, kind in kinds:
        resource = api.resource(api_version, kind)
        if resource is None:
            continue
        scopes = sorted(n for n in namespaces if n) if resource.namespaced else [None]
        for namespace in scopes:
            listing = api.request("GET", resource.path(namespace), query=selector)
            for obj in listing.get("items") or []:
                meta = obj.get("metadata") or {}
                labels = meta.get("labels") or {}
                if any(labels.get(k) != v for k, v in inventory_labels(record).items()):
                    continue  # the server ignored the selector: never delete unlabelled objects
                item = InventoryItem(api_version, kind, namespace, str(meta.get("name")))
                found.append((item, str(meta.get("uid", ""))))
    keep = {(p.manifest.group, p.manifest.kind, p.namespace, p.manifest.name) for p in planned}
    pruned = []
    for item, item_uid in prune_candidates(found, keep):
        resource = api.resource(item.api_version, item.kind)
        if resource is None:
            continue
        name = f"{item.kind}/{item.name}" + (f" in {item.namespace}" if item.namespace else "")
        if api.delete(resource.path(item.namespace, item.name), uid=item_uid or None):
            say(f"pruned {name}")
            pruned.append(name)
    return pruned
