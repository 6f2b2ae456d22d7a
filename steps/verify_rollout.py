"""gitops-verify-rollout: apply manifests to a cluster and know whether the rollout worked.

The flow: flags -> cluster access -> manifests read and checked -> plan
(order, namespaces, scope) -> lock -> server-side dry run of everything ->
server-side apply in dependency order -> watch until every object is rolled
out, one of the new revision's pods fails, or the timeout -> record, prune,
or roll back -> result.

The rules that decide are in ``steps.rollout_rules`` (pure); this module only
feeds them live objects from watches.
"""

from __future__ import annotations

import enum
import os
import queue
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from steps import rollout_rules as rules
from steps.cli import (
    StepParser,
    StepRun,
    add_common_options,
    parse_duration,
    run_step,
    settle_imports,
    version_text,
)
from steps.errors import CheckFailed, ExternalError, ManifestError, StepError, UsageError
from steps.live_record import (
    InventoryItem,
    LiveRecord,
    check_record_name,
    configmap_name,
    images_in,
    inventory_labels,
    inventory_selector,
)
from steps.output import say, warn
from steps.timefmt import parse_rfc3339

if TYPE_CHECKING:
    from steps.kube import (
        Access,
        ApiError,
        CollectionWatch,
        Event,
        KubeApi,
        LeaseLock,
        Resource,
    )

STEP = "verify-rollout"
YAML_SUFFIXES = (".yaml", ".yml")
LOCAL_ONLY_GROUPS = ("kustomize.config.k8s.io", "config.kubernetes.io")
CRD_GROUP_KIND = ("apiextensions.k8s.io", "CustomResourceDefinition")
NAMESPACE_GROUP_KIND = ("", "Namespace")
TICK = 0.5
"""Seconds between checks of grace periods and the deadline when nothing happens."""
UNREACHABLE_AT_TIMEOUT = 10.0
"""Seconds without the API server at the deadline that make a timeout exit 3."""
WAITING_FOR_CONTROLLER = (rules.NOT_APPLIED_YET, rules.GENERATION_LAG)
"""Reasons that mean the controller has not acted on the object yet."""
RECENT_EVENTS = 5
DEFAULT_TIMEOUT = "10m"
ROLLBACK_SHARE = 1 / 3
"""Share of ``--timeout`` kept for ``--rollback-on-failure`` unless ``--rollback-timeout``."""

DESCRIPTION = """\
Apply manifests to a cluster with server-side apply, then wait (by watching)
until every object is rolled out; fail fast when the new revision's pods fail.

examples:
  gitops-verify-rollout --manifests out/ --cluster projects/p/locations/europe-west1/clusters/prod
  gitops-verify-rollout --manifests out/ --kubeconfig kube.yaml --context sandbox \\
      --lock prod --record prod --commit $COMMIT_SHA --prune --rollback-on-failure production/

exit codes: 0 rolled out; 1 failed or timed out; 2 bad manifests or flags;
3 cluster unreachable after retries.
"""


# --------------------------------------------------------------------------- manifests


@dataclass(frozen=True)
class ObjRef:
    group: str
    kind: str
    namespace: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"

    def qualified(self) -> str:
        return f"{self.namespace}/{self}" if self.namespace else str(self)


@dataclass(frozen=True)
class Manifest:
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
        return rules.group_kind(self.obj)[0]

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
    from steps.manifest_edit import KUSTOMIZATION_FILENAMES

    for path in files:
        if path.name in KUSTOMIZATION_FILENAMES:
            raise UsageError(
                f"{flag} {directory}: {path} is a Kustomize file, and verify-rollout "
                "expects rendered manifests (render the overlay in the app build: "
                "gitops-update-manifest --kustomize ENV=DIR)"
            )


def load_manifests(directory: Path, flag: str = "--manifests") -> list[Manifest]:
    """Every object in the YAML files under ``directory`` (or in one file)."""
    from steps.manifest_io import walk_files

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

    from steps.manifest_edit import compose_documents

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
        if not isinstance(obj.get(key), str) or not obj.get(key):
            raise where(manifest.source, manifest.line, f"object without {key}")
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


@dataclass(frozen=True)
class Scope:
    """What the planner knows about one kind: served now, or defined by a manifest CRD."""

    namespaced: bool
    served: bool


@dataclass
class Planned:
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


# --------------------------------------------------------------------------- apply


@dataclass
class Target:
    """One applied object the wait follows."""

    ref: ObjRef
    resource: Resource
    applied_generation: int | None
    live: dict[str, Any]
    verdict: rules.Verdict | None = None
    clock: rules.ProblemClock = field(default_factory=rules.ProblemClock)


def scopes_for(api: KubeApi, manifests: Sequence[Manifest]) -> dict[tuple[str, str], Scope]:
    """Ask discovery about each kind; fall back to CRDs among the manifests."""
    from steps.parallel import run_all

    defined = crd_scopes(manifests)
    scopes: dict[tuple[str, str], Scope] = {}
    # Discovery of each group version at once; the loop below reads the cache.
    versions = sorted({manifest.api_version for manifest in manifests})
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
    from steps.kube import ApiError
    from steps.parallel import run_all

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


@dataclass
class ApplyProgress:
    """What one apply has changed so far, to say (and undo) when it stops half-way."""

    applied: list[ObjRef] = field(default_factory=list)
    waiting: bool = False
    """True once every object is applied and the wait has begun."""

    @property
    def half_applied(self) -> bool:
        return bool(self.applied) and not self.waiting


def apply_objects(
    api: KubeApi, planned: Sequence[Planned], progress: ApplyProgress | None = None
) -> list[Target]:
    from steps.kube import ApiError

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


# --------------------------------------------------------------------------- wait


@dataclass(frozen=True)
class WaitOptions:
    deadline: float
    graces: rules.Graces = field(default_factory=rules.Graces)
    wait_load_balancer: bool = False
    log_lines: int = 20
    unreachable_grace: float = UNREACHABLE_AT_TIMEOUT


@dataclass
class Failure:
    """Why a rollout failed, in the words of the failure report."""

    object: str
    namespace: str | None
    reason: str
    message: str
    pod: str | None = None
    container: str | None = None
    restarts: int | None = None
    events: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}

    def report(self) -> list[str]:
        where = self.object
        if self.pod:
            where += f", pod {self.pod}"
        if self.container:
            where += f", container {self.container}"
        lines = [f"rollout failed: {where}: {self.reason}: {self.message}".rstrip(": ")]
        if self.restarts:
            lines.append(f"  restarts: {self.restarts}")
        if self.events:
            lines.append("  recent warning events:")
            lines.extend(f"    {event}" for event in self.events)
        if self.logs:
            lines.append(f"  last {len(self.logs)} log lines of {self.container or 'the pod'}:")
            lines.extend(f"    | {line}" for line in self.logs)
        return lines


@dataclass
class WaitOutcome:
    status: str  # rolled-out | failed | timed-out
    targets: list[Target]
    failure: Failure | None = None
    seconds: float = 0.0
    watch_restarts: int = 0

    @property
    def waiting(self) -> list[Target]:
        return [t for t in self.targets if t.verdict is None or not t.verdict.done]


class Waiter:
    """Watch the targets (and their pods) until all are Current, one fails, or time is up."""

    def __init__(self, api: KubeApi, targets: Sequence[Target], options: WaitOptions) -> None:
        self.api = api
        self.targets = list(targets)
        self.options = options
        self.started_wall = time.time()
        self.events: queue.Queue[Event] = queue.Queue()
        self.cache: dict[str, dict[tuple[str | None, str], dict[str, Any]]] = {}
        self.synced: set[str] = set()
        self.watches: dict[str, CollectionWatch] = {}
        self.target_paths: set[str] = set()

    # -- collections

    def _collection(self, resource: Resource, namespace: str | None) -> str:
        return resource.path(namespace if resource.namespaced else None)

    def _watch(self, path: str) -> None:
        from steps.kube import CollectionWatch

        if path not in self.watches:
            self.cache.setdefault(path, {})
            self.watches[path] = CollectionWatch(self.api, path, path, self.events).start()

    def _pod_paths(self, namespace: str | None) -> tuple[str, str, str]:
        ns = namespace or "default"
        return (
            f"/api/v1/namespaces/{ns}/pods",
            f"/apis/apps/v1/namespaces/{ns}/replicasets",
            f"/api/v1/namespaces/{ns}/events",
        )

    def _start_watches(self, pending: Sequence[Target]) -> None:
        for target in pending:
            path = self._collection(target.resource, target.ref.namespace)
            self.target_paths.add(path)
            self._watch(path)
            owner = rules.POD_OWNERS.get((target.ref.group, target.ref.kind))
            if owner is not None:
                pods, replicasets, events = self._pod_paths(target.ref.namespace)
                self._watch(pods)
                self._watch(events)
                if owner.via_replicasets:
                    self._watch(replicasets)

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop()

    # -- the loop

    def run(self) -> WaitOutcome:
        started = time.monotonic()
        try:
            outcome = self._loop()
        finally:
            self.stop()
        outcome.seconds = time.monotonic() - started
        outcome.watch_restarts = sum(w.restarts for w in self.watches.values())
        return outcome

    def _loop(self) -> WaitOutcome:
        failure = self._evaluate()
        pending = [t for t in self.targets if not (t.verdict and t.verdict.done)]
        if failure is None and pending:
            self._start_watches(pending)
        while True:
            if failure is not None:
                return WaitOutcome("failed", self.targets, failure)
            if all(t.verdict is not None and t.verdict.done for t in self.targets):
                return WaitOutcome("rolled-out", self.targets)
            left = self.options.deadline - time.monotonic()
            if left <= 0:
                self._check_reachable()
                return WaitOutcome("timed-out", self.targets)
            try:
                self._handle(self.events.get(timeout=min(TICK, left)))
                while True:
                    self._handle(self.events.get_nowait())
            except queue.Empty:
                pass
            failure = self._evaluate()

    def _check_reachable(self) -> None:
        """Time ran out while the API server was away: that is exit 3, not a verdict."""
        lost = max((w.unreachable_for() for w in self.watches.values()), default=0.0)
        if lost > self.options.unreachable_grace:
            raise ExternalError(
                f"Kubernetes API {self.api.host}: unreachable for the last {lost:.0f}s "
                "of the rollout; its outcome is unknown"
            )

    def _handle(self, event: Event) -> None:
        if event.type == "BUG" and event.error is not None:
            # Not the cluster's fault: a traceback (exit 70), no verdict, no rollback.
            raise event.error
        if event.type == "FATAL":
            error = event.error
            status = getattr(error, "status", 0)
            if event.key not in self.target_paths and status in (401, 403, 404):
                # Pods, ReplicaSets or Events we may not read: judge by status alone.
                warn(f"cannot watch {event.key} (HTTP {status}): no fail-fast from it")
                self.synced.add(event.key)
                return
            detail = str(error) if error is not None else "unreachable"
            raise ExternalError(f"Kubernetes API {self.api.host}: watching {event.key}: {detail}")
        store = self.cache.setdefault(event.key, {})
        if event.type == "SYNC":
            store.clear()
            for item in event.items:
                store[_key(item)] = item
            self.synced.add(event.key)
        elif event.type == "DELETED":
            store.pop(_key(event.obj), None)
        elif event.type in ("ADDED", "MODIFIED"):
            store[_key(event.obj)] = event.obj

    def _live(self, target: Target) -> dict[str, Any] | None:
        path = self._collection(target.resource, target.ref.namespace)
        if path not in self.synced:
            return target.live
        return self.cache.get(path, {}).get((target.ref.namespace, target.ref.name))

    def _evaluate(self) -> Failure | None:
        now = time.monotonic()
        for target in self.targets:
            live = self._live(target)
            if live is None:
                verdict = rules.in_progress("NotFound", "not found (deleted?)")
            else:
                target.live = live
                verdict = rules.status_of(
                    live,
                    applied_generation=target.applied_generation,
                    wait_load_balancer=self.options.wait_load_balancer,
                )
            if verdict != target.verdict:
                target.verdict = verdict
                say(f"{target.ref}: {verdict.message}")
            if verdict.status is rules.Status.FAILED:
                return self._object_failure(target, verdict)
            if verdict.done or live is None or verdict.reason in WAITING_FOR_CONTROLLER:
                continue  # until the controller has seen our change, its pods are not ours
            if (target.ref.group, target.ref.kind) in rules.POD_OWNERS:
                failure = self._pod_failure(target, live, now)
                if failure is not None:
                    return failure
        return None

    def _pods_of(self, target: Target, live: Mapping[str, Any]) -> tuple[list[Any], list[str]]:
        """The new revision's pods, and the uids of their controllers (for FailedCreate)."""
        pods_path, rs_path, _ = self._pod_paths(target.ref.namespace)
        pods = list(self.cache.get(pods_path, {}).values())
        replicasets = list(self.cache.get(rs_path, {}).values())
        return rules.new_revision_pods(live, pods, replicasets), rules.pod_controllers(
            live, replicasets
        )

    def _pod_failure(self, target: Target, live: Mapping[str, Any], now: float) -> Failure | None:
        new_pods, owners = self._pods_of(target, live)
        problems = [problem for pod in new_pods for problem in rules.pod_problems(pod)]
        problems += rules.failed_create_problems(self._recent_events(), owners)
        fatal = target.clock.fatal(problems, now, self.options.graces)
        if not fatal:
            return None
        problem = fatal[0]
        pod = next(
            (p for p in new_pods if rules.get_path(p, "metadata", "name") == problem.pod), None
        )
        return self._report(target, problem, pod)

    def _recent_events(self) -> list[dict[str, Any]]:
        """Warning events in the watched namespaces since this wait began."""
        found: list[dict[str, Any]] = []
        for path, store in self.cache.items():
            if not path.endswith("/events"):
                continue
            for event in store.values():
                if event.get("type") != "Warning":
                    continue
                when = _event_time(event)
                if when is not None and when < self.started_wall - 1:
                    continue
                found.append(event)
        return found

    # -- failure reports

    def _object_failure(self, target: Target, verdict: rules.Verdict) -> Failure:
        names = {target.ref.name}
        failure = Failure(str(target.ref), target.ref.namespace, verdict.reason, verdict.message)
        failure.events = self._events_about(names)
        return failure

    def _report(self, target: Target, problem: rules.Problem, pod: Any) -> Failure:
        failure = Failure(
            str(target.ref),
            target.ref.namespace,
            problem.reason,
            problem.message,
            pod=problem.pod if pod is not None else None,
            container=problem.container,
            restarts=problem.restarts if problem.container else None,
        )
        names = {target.ref.name, problem.pod}
        if pod is not None:
            for ref in rules.get_path(pod, "metadata", "ownerReferences", default=[]):
                names.add(str(ref.get("name")))
        failure.events = self._events_about(names)
        if pod is not None and problem.container and self.options.log_lines > 0:
            failure.logs = self._logs(target.ref.namespace, problem)
        return failure

    def _events_about(self, names: set[str]) -> list[str]:
        relevant = [
            e for e in self._recent_events() if rules.get_path(e, "involvedObject", "name") in names
        ]
        relevant.sort(key=lambda e: _event_time(e) or 0.0)
        lines = []
        for event in relevant[-RECENT_EVENTS:]:
            involved = event.get("involvedObject") or {}
            count = event.get("count") or rules.get_path(event, "series", "count") or 1
            times = f" (x{count})" if isinstance(count, int) and count > 1 else ""
            lines.append(
                f"{involved.get('kind', '?')}/{involved.get('name', '?')}: "
                f"{event.get('reason', '')}: {str(event.get('message', '')).strip()}{times}"
            )
        return lines

    def _logs(self, namespace: str | None, problem: rules.Problem) -> list[str]:
        from steps.kube import ApiError

        path = f"/api/v1/namespaces/{namespace or 'default'}/pods/{problem.pod}/log"
        query = [("container", str(problem.container)), ("tailLines", str(self.options.log_lines))]
        attempts = [[*query, ("previous", "true")], query] if problem.restarts else [query]
        for attempt in attempts:
            try:
                text = self.api.text(path, attempt)
            except (ApiError, ExternalError) as exc:
                last = str(exc)
                continue
            lines = text.rstrip("\n").splitlines()[-self.options.log_lines :]
            if lines:
                return lines
            last = "empty"
        return [f"(no log: {last})"]


def _key(obj: Mapping[str, Any]) -> tuple[str | None, str]:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return (str(namespace) if namespace else None, str(meta.get("name", "")))


def _event_time(event: Mapping[str, Any]) -> float | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        found = parse_rfc3339(event.get(key))
        if found is not None:
            return found
    return parse_rfc3339(rules.get_path(event, "metadata", "creationTimestamp"))


def summary_table(targets: Sequence[Target]) -> list[str]:
    rows = [("OBJECT", "NAMESPACE", "STATUS", "DETAIL")]
    for target in targets:
        verdict = target.verdict
        rows.append(
            (
                str(target.ref),
                target.ref.namespace or "-",
                verdict.status.value if verdict else "Unknown",
                verdict.message if verdict else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [
        f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}}  {row[3]}".rstrip()
        for row in rows
    ]


def object_rows(targets: Sequence[Target]) -> list[dict[str, Any]]:
    return [
        {
            "object": str(t.ref),
            "namespace": t.ref.namespace,
            "status": t.verdict.status.value if t.verdict else "Unknown",
            "reason": t.verdict.reason if t.verdict else None,
            "message": t.verdict.message if t.verdict else None,
        }
        for t in targets
    ]


# --------------------------------------------------------------------------- one rollout


@dataclass(frozen=True)
class Config:
    manifests: Path
    namespace: str | None
    timeout: float
    lock: str | None
    lock_namespace: str | None
    lock_duration: int
    lock_timeout: float | None
    record: str | None
    commit: str | None
    prune: bool
    rollback_dir: Path | None
    allow_cluster_scoped: bool
    graces: rules.Graces
    wait_load_balancer: bool
    log_lines: int
    notes: str | None = None
    rollback_timeout: float | None = None


def apply_and_wait(
    api: KubeApi,
    manifests: Sequence[Manifest],
    config: Config,
    *,
    labels: Mapping[str, str],
    deadline: float,
    progress: ApplyProgress | None = None,
) -> tuple[list[Planned], WaitOutcome]:
    """Dry-run, apply in order (CRDs established first), wait. The rollout itself.

    ``progress`` learns each object as it is applied, so that a caller seeing
    an error can tell a refusal before any change from a half-applied cluster.
    """
    progress = progress if progress is not None else ApplyProgress()
    namespace = config.namespace or api.default_namespace
    planned = plan(
        manifests,
        scopes_for(api, manifests),
        namespace=namespace,
        namespace_given=config.namespace is not None,
        allow_cluster_scoped=config.allow_cluster_scoped,
        labels=labels,
    )
    absent = missing_namespaces(api, planned)
    early = [p for p in planned if p.phase <= Phase.NAMESPACES]
    deferred = [
        p for p in planned if p.phase > Phase.NAMESPACES and (not p.served or p.namespace in absent)
    ]
    now_checkable = [p for p in planned if p not in deferred]
    say(f"dry run: {len(now_checkable)} object(s) on the server")
    server_dry_run(api, now_checkable)
    options = WaitOptions(
        deadline=deadline,
        graces=config.graces,
        wait_load_balancer=config.wait_load_balancer,
        log_lines=config.log_lines,
        unreachable_grace=min(UNREACHABLE_AT_TIMEOUT, config.timeout / 2),
    )
    targets: list[Target] = []
    if deferred:
        # CRDs and Namespaces first, so that what depends on them can be checked.
        first = apply_objects(api, early, progress)
        crds = [t for t in first if (t.ref.group, t.ref.kind) == CRD_GROUP_KIND]
        if crds:
            outcome = Waiter(api, crds, options).run()
            if outcome.status != "rolled-out":
                return planned, outcome
            api.forget_discovery()
        targets.extend(first)
        say(f"dry run: {len(deferred)} object(s) that needed new CRDs or namespaces")
        try:
            server_dry_run(api, deferred)
        except ManifestError as exc:
            raise ManifestError(
                exc.path, exc.line, exc.problem + " (CRDs and Namespaces were already applied)"
            ) from None
        targets.extend(
            apply_objects(api, [p for p in planned if p.phase > Phase.NAMESPACES], progress)
        )
    else:
        targets.extend(apply_objects(api, planned, progress))
    progress.waiting = True
    say(f"waiting for {len(targets)} object(s)")
    return planned, Waiter(api, targets, options).run()


def inventory(planned: Sequence[Planned]) -> tuple[InventoryItem, ...]:
    return tuple(
        InventoryItem(p.manifest.api_version, p.manifest.kind, p.namespace, p.manifest.name)
        for p in planned
    )


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


# --------------------------------------------------------------------------- command line


def build_parser() -> StepParser:
    from steps.kube import LEASE_DURATION, add_access_options

    parser = StepParser(prog="gitops-verify-rollout", description=DESCRIPTION)
    parser.add_option(
        "--manifests", required=True, metavar="DIR", help="directory (or file) of YAML manifests"
    )
    parser.add_option(
        "--namespace", metavar="NS", help="namespace for objects without one (default: context's)"
    )
    parser.add_option(
        "--timeout",
        default=None,
        metavar="DURATION",
        help=f"overall time for the rollout to complete (default {DEFAULT_TIMEOUT})",
    )
    add_access_options(parser)
    _add_lock_options(parser, LEASE_DURATION)
    parser.add_option(
        "--record", metavar="NAME", help="after success, write ConfigMap gitops-steps-NAME"
    )
    parser.add_option(
        "--commit", metavar="SHA", help="candidate commit for --record (default: $COMMIT_SHA)"
    )
    parser.add_option(
        "--prune",
        action="store_true",
        help="delete objects applied earlier under --record but no longer in the manifests",
    )
    _add_rollout_options(parser)
    parser.add_option(
        "--notes",
        metavar="URL",
        help="env repo in which to record the outcome as a Git note on --commit "
        "(refs/notes/gitops, read by gitops-history)",
    )
    add_common_options(parser)
    parser.add_argument("--version", action="version", version=version_text())
    return parser


def _add_lock_options(parser: StepParser, lease_duration: int) -> None:
    """--lock and how long to hold it and to wait for it."""
    parser.add_option("--lock", metavar="NAME", help="hold the Lease NAME while applying/waiting")
    parser.add_option(
        "--lock-namespace", metavar="NS", help="namespace of the Lease (default: --namespace)"
    )
    parser.add_option(
        "--lock-duration",
        type=int,
        metavar="SECONDS",
        help=f"how long a holder that stops renewing keeps the lock (default {lease_duration})",
    )
    parser.add_option(
        "--lock-timeout",
        metavar="DURATION",
        help="how long to wait for the lock (default: --timeout)",
    )


def _add_rollout_options(parser: StepParser) -> None:
    """What the rollout may apply, how failure is judged, and the rollback."""
    parser.add_option(
        "--rollback-on-failure",
        metavar="DIR",
        help="on failure, re-apply these manifests and wait for them (still exit 1)",
    )
    parser.add_option(
        "--rollback-timeout",
        metavar="DURATION",
        help="part of --timeout kept for the rollback: the rollout's wait ends this much "
        "earlier (default: a third of --timeout)",
    )
    parser.add_option(
        "--allow-cluster-scoped",
        action="store_true",
        help="allow cluster-scoped kinds other than Namespace and CustomResourceDefinition",
    )
    parser.add_option(
        "--wait-load-balancer",
        action="store_true",
        help="wait for LoadBalancer Services to get an address",
    )
    parser.add_option(
        "--failure-grace",
        metavar="DURATION",
        help="how long ErrImagePull, CreateContainerConfigError, FailedCreate may "
        "persist before failing (default 30s)",
    )
    parser.add_option(
        "--unschedulable-grace",
        metavar="DURATION",
        help="how long a new pod may stay Unschedulable (default 2m)",
    )
    parser.add_option(
        "--log-lines",
        type=int,
        metavar="N",
        help="log lines of a failed container in the report (default 20)",
    )


def config_from_args(args: Any) -> Config:
    record = check_record_name(args.record) if args.record else None
    commit = args.commit or os.environ.get("COMMIT_SHA") or None
    if record and not commit:
        raise UsageError("--record needs --commit SHA (or GITOPS_COMMIT / COMMIT_SHA)")
    if args.notes and not commit:
        raise UsageError("--notes needs --commit SHA (or GITOPS_COMMIT / COMMIT_SHA)")
    if args.prune and not record:
        raise UsageError("--prune needs --record NAME (the inventory it prunes from)")
    if args.lock:
        check_record_name(args.lock, "--lock")
    timeout = parse_duration(args.timeout or DEFAULT_TIMEOUT, "--timeout")
    if timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: must be positive")
    rollback = Path(args.rollback_on_failure) if args.rollback_on_failure else None
    if rollback is not None and not rollback.exists():
        raise UsageError(f"--rollback-on-failure {rollback}: no such file or directory")
    rollback_timeout = (
        parse_duration(args.rollback_timeout, "--rollback-timeout")
        if args.rollback_timeout
        else None
    )
    if rollback_timeout is not None:
        if rollback is None:
            raise UsageError("--rollback-timeout only goes with --rollback-on-failure")
        if not 0 < rollback_timeout < timeout:
            raise UsageError(
                f"--rollback-timeout {args.rollback_timeout}: must be more than 0 and "
                f"less than --timeout ({format_seconds(timeout)}), which it is part of"
            )
    graces = rules.Graces(
        persisting=parse_duration(args.failure_grace or "30s", "--failure-grace"),
        unschedulable=parse_duration(args.unschedulable_grace or "2m", "--unschedulable-grace"),
    )
    return Config(
        manifests=Path(args.manifests),
        namespace=args.namespace,
        timeout=timeout,
        lock=args.lock,
        lock_namespace=args.lock_namespace,
        lock_duration=args.lock_duration or 30,
        lock_timeout=parse_duration(args.lock_timeout, "--lock-timeout")
        if args.lock_timeout
        else None,
        record=record,
        commit=commit,
        prune=bool(args.prune),
        rollback_dir=rollback,
        allow_cluster_scoped=bool(args.allow_cluster_scoped),
        graces=graces,
        wait_load_balancer=bool(args.wait_load_balancer),
        log_lines=20 if args.log_lines is None else max(args.log_lines, 0),
        notes=args.notes,
        rollback_timeout=rollback_timeout,
    )


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled build) unwinds like Ctrl-C, so the lock is released."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def take_lock(api: KubeApi, config: Config, namespace: str) -> tuple[LeaseLock, float]:
    from steps.kube import LeaseLock, LockTimeout

    assert config.lock is not None
    lock_namespace = config.lock_namespace or namespace
    lock = LeaseLock(api, lock_namespace, config.lock, duration=config.lock_duration)
    wait = config.lock_timeout if config.lock_timeout is not None else config.timeout

    def waiting(holder: str, left: float) -> None:
        say(
            f"lock {config.lock}: held by {holder} (expires in {left:.0f}s unless renewed); waiting"
        )

    try:
        waited = lock.acquire(time.monotonic() + wait, waiting)
    except LockTimeout as exc:
        raise CheckFailed(
            f"--lock {config.lock}: still held by {exc.holder} after {format_seconds(wait)}"
        ) from None
    say(f"lock {config.lock}: acquired in namespace {lock_namespace} as {lock.identity}")
    return lock, waited


def format_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def report_outcome(outcome: WaitOutcome, timeout: float) -> dict[str, Any]:
    """Say how the wait ended and describe it for the result."""
    for line in summary_table(outcome.targets):
        say(line)
    described: dict[str, Any] = {
        "status": outcome.status,
        "seconds": round(outcome.seconds, 3),
        "objects": object_rows(outcome.targets),
    }
    if outcome.watch_restarts:
        described["watch_restarts"] = outcome.watch_restarts
    if outcome.failure is not None:
        for line in outcome.failure.report():
            say(line)
        described["failure"] = outcome.failure.as_dict()
    elif outcome.status == "timed-out":
        waiting = [
            f"{t.ref} ({t.verdict.message if t.verdict else 'no status'})" for t in outcome.waiting
        ]
        say(f"timed out after {format_seconds(timeout)}; still waiting for: {', '.join(waiting)}")
        described["waiting"] = [str(t.ref) for t in outcome.waiting]
    return described


def rollback_budget(config: Config) -> float:
    """Seconds of ``--timeout`` kept back for the rollback (0 without one).

    One deadline for the whole stage: the rollout's wait ends this much before
    it, and the rollback has whatever is left (at least this much).
    """
    if config.rollback_dir is None:
        return 0.0
    if config.rollback_timeout is not None:
        return config.rollback_timeout
    return config.timeout * ROLLBACK_SHARE


def roll_back(
    api: KubeApi,
    manifests: Sequence[Manifest],
    config: Config,
    labels: Mapping[str, str],
    deadline: float,
) -> dict[str, Any]:
    """Re-apply the last good manifests and wait for them until ``deadline`` (still exit 1)."""
    left = max(deadline - time.monotonic(), 0.0)
    say(f"rolling back: applying {config.rollback_dir} ({format_seconds(left)} left)")
    try:
        _, outcome = apply_and_wait(api, manifests, config, labels=labels, deadline=deadline)
    except (ManifestError, UsageError, ExternalError) as exc:
        say(f"rollback failed: {exc.message}")
        return {"status": "error", "error": exc.message}
    described = report_outcome(outcome, left)
    say(f"rollback {'complete' if outcome.status == 'rolled-out' else outcome.status}")
    return described


def lock_still_held(api: KubeApi, lock: LeaseLock) -> bool:
    """Ask the Lease itself: the renewer looks only every third of its duration."""
    from steps.kube import ApiError, describe_error

    if lock.lost.is_set():
        return False
    try:
        lease = api.get(lock.path)
    except ApiError as exc:  # cannot tell: then we cannot vouch for what is live either
        warn(f"lock {lock.name}: cannot read its Lease: {describe_error(exc)}")
        return False
    holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return bool(holder == lock.identity)


def half_applied(exc: StepError, progress: ApplyProgress, result: dict[str, Any]) -> dict[str, Any]:
    """The apply stopped after changing the cluster: say what it changed (pure but for say)."""
    applied = [ref.qualified() for ref in progress.applied]
    say(f"error: {exc.message}")
    say(f"the apply stopped half-way; already applied: {', '.join(applied)}")
    result.update(
        {
            "status": "apply-failed",
            "exit_code": exc.exit_code,
            "error": exc.message,
            "applied": applied,
            "failure": {"reason": "ApplyFailed", "message": exc.message},
        }
    )
    return result


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    from steps.kube import access_from_args

    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    config = config_from_args(args)
    access = access_from_args(args)
    manifests = load_manifests(config.manifests)
    rollback_manifests = (
        load_manifests(config.rollback_dir, "--rollback-on-failure")
        if config.rollback_dir is not None
        else None
    )
    result = rollout(config, access, manifests, rollback_manifests)
    if config.notes and config.commit:
        note_outcome(config.notes, config.commit, result)
    return result


def note_outcome(repo: str, commit: str, result: Mapping[str, Any]) -> None:
    """Record the verdict as a Git note; a failure to do so is only a warning."""
    from steps.deploy_notes import record_outcome, verdict_of_rollout

    outcome, reason = verdict_of_rollout(result)
    try:
        record_outcome(repo, commit, outcome, reason, os.environ.get("BUILD_ID") or None)
    except StepError as exc:
        warn(f"--notes: could not record the outcome: {exc.message}")


def rollout(
    config: Config,
    access: Access,
    manifests: Sequence[Manifest],
    rollback_manifests: Sequence[Manifest] | None,
) -> dict[str, Any]:
    """Connect, lock, apply, wait, record; the result (exit_code 1 on failure)."""
    from steps.kube import connect
    from steps.live_record import read_live_record

    say(f"cluster: {access.describe()}")
    api = connect(access)
    namespace = config.namespace or api.default_namespace
    labels = inventory_labels(config.record) if config.record else {}
    result: dict[str, Any] = {"cluster": access.describe(), "namespace": namespace}
    started = time.monotonic()
    lock: LeaseLock | None = None
    with sigterm_as_interrupt():
        try:
            if config.lock:
                lock, waited = take_lock(api, config, namespace)
                result["lock"] = {"name": config.lock, "waited_seconds": round(waited, 3)}
            previous = (
                read_live_record(api, namespace, config.record)
                if config.record and config.prune
                else None
            )
            deadline = time.monotonic() + config.timeout
            reserved = rollback_budget(config) if rollback_manifests is not None else 0.0
            progress = ApplyProgress()
            try:
                planned, outcome = apply_and_wait(
                    api,
                    manifests,
                    config,
                    labels=labels,
                    deadline=deadline - reserved,
                    progress=progress,
                )
            except (ManifestError, ExternalError) as exc:
                if not progress.half_applied:
                    raise  # nothing changed yet, or the wait's own error: as it is
                half_applied(exc, progress, result)
                if rollback_manifests is not None and not _lock_lost(api, lock, config):
                    result["rollback"] = roll_back(
                        api, rollback_manifests, config, labels, deadline
                    )
                return result
            result.update(report_outcome(outcome, config.timeout - reserved))
            if _lock_lost(api, lock, config):
                # Another build holds the environment now: what is live is its to say.
                result.update(
                    {
                        "status": "lock-lost",
                        "exit_code": 1,
                        "failure": {
                            "reason": "LockLost",
                            "message": f"lock {config.lock} was taken by another holder "
                            "during the rollout; not recorded, not pruned, not rolled back",
                        },
                    }
                )
                return result
            if outcome.status == "rolled-out":
                result.update(_prune_and_record(api, config, namespace, planned, previous))
                say(
                    f"rolled out {len(outcome.targets)} object(s) in "
                    f"{time.monotonic() - started:.1f}s"
                )
                return result
            result["exit_code"] = 1
            if rollback_manifests is not None:
                result["rollback"] = roll_back(api, rollback_manifests, config, labels, deadline)
            return result
        finally:
            if lock is not None:
                lock.release()
                say(f"lock {config.lock}: released")


def _prune_and_record(
    api: KubeApi,
    config: Config,
    namespace: str,
    planned: Sequence[Planned],
    previous: LiveRecord | None,
) -> dict[str, Any]:
    """After a rollout: prune what the last record applied and this one does not
    (``--prune``), then record this commit as live (``--record``)."""
    from steps.live_record import write_live_record

    result: dict[str, Any] = {}
    if config.prune and config.record:
        result["pruned"] = prune(api, config.record, planned, previous)
    if config.record and config.commit:
        record = LiveRecord(
            name=config.record,
            namespace=namespace,
            commit=config.commit,
            build_id=os.environ.get("BUILD_ID") or None,
            time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            images=images_in([p.obj for p in planned]),
            inventory=inventory(planned),
        )
        write_live_record(api, record)
        say(f"recorded {config.commit} as live in {configmap_name(config.record)}")
        result["record"] = record.as_dict()
    return result


def _lock_lost(api: KubeApi, lock: LeaseLock | None, config: Config) -> bool:
    if lock is None or lock_still_held(api, lock):
        return False
    warn(f"lock {config.lock} was taken by another holder during the rollout")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    settle_imports(argv)
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
