"""The API's write semantics, shared by the HTTP front end and the controllers.

Create, update, patch (merge, strategic, JSON, apply) and delete all end in
``_commit``, which restores server-owned metadata, defaults and validates,
bumps ``generation`` on spec changes, tracks field ownership and skips no-op
writes (no new resourceVersion, no watch event), as the API server does.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

from steps.sandbox.kube import apierrors as errors
from steps.sandbox.kube import merge, schema
from steps.sandbox.kube.apierrors import ApiError
from steps.sandbox.kube.resources import Registry, ResourceType
from steps.sandbox.kube.selectors import field_matcher, label_matcher
from steps.sandbox.kube.store import HISTORY, Store, clone

CONTROLLER = "kube-controller-manager"
PATCH_TYPES_BUILTIN = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
]
PATCH_TYPES_CUSTOM = [t for t in PATCH_TYPES_BUILTIN if "strategic" not in t]
VALIDATION_MODES = ("Ignore", "Warn", "Strict")
_SERVER_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
    "selfLink",
)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def random_suffix(length: int = 5) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class WriteOptions:
    """What a write request asked for, besides its body."""

    manager: str = CONTROLLER
    dry_run: bool = False
    validation: str = "Warn"
    force: bool = False
    subresource: str | None = None
    warnings: list[str] = field(default_factory=list)


class Cluster:
    """Registry + store + the rules for changing what is stored."""

    def __init__(self, history: int = HISTORY) -> None:
        self.registry = Registry()
        self.store = Store(history)
        self.lock = self.store.lock
        self._cluster_ip = 10

    # -- reading ----------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.store.get(rt.key, namespace, name)
            if obj is None:
                raise errors.not_found(rt, name)
            return clone(obj)

    def find(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.store.get(rt.key, namespace, name)
            return clone(obj) if obj is not None else None

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        labels = label_matcher(label_selector)
        fields = field_matcher(field_selector, rt.kind)
        with self.lock:
            items = [
                clone(o)
                for o in self.store.items(rt.key, namespace)
                if labels(o["metadata"].get("labels") or {}) and fields(o)
            ]
            return items, self.store.resource_version

    def check_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise errors.namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.namespace_terminating(rt, name, namespace)

    # -- create -----------------------------------------------------------------

    def create(
        self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions
    ) -> dict[str, Any]:
        obj = self._check_body(rt, namespace, body, None)
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + random_suffix()
            else:
                raise errors.invalid(
                    rt,
                    "",
                    [
                        (
                            "metadata.name",
                            "FieldValueRequired",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
        self._check_unknown(rt, obj, opts, apply=False)
        with self.lock:
            self.check_namespace(rt, namespace, meta["name"])
            if self.store.get(rt.key, namespace, meta["name"]) is not None:
                raise errors.already_exists(rt, meta["name"])
            return self._create(rt, obj, opts, operation="Update", config=None)

    def _create(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        opts: WriteOptions,
        operation: str,
        config: dict[str, Any] | None,
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        for key in (*_SERVER_META, "managedFields"):
            meta.pop(key, None)
        if rt.has_status or rt.kind == "Pod":
            obj.pop("status", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.has_generation:
            meta["generation"] = 1
        schema.apply_defaults(rt, obj)
        self._on_create(rt, obj)
        causes = schema.validate(rt, obj, None)
        if causes:
            raise errors.invalid(rt, meta["name"], causes)
        fields = merge.leaves(
            merge.owned_view(config if config is not None else obj, None, rt.has_status),
            not rt.custom,
        )
        entries: list[dict[str, Any]] = []
        _set_entry(entries, opts.manager, operation, None, rt, set(fields))
        meta["managedFields"] = entries
        if opts.dry_run:
            return obj
        return clone(self.store.put(rt.key, obj))

    def _on_create(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """What admission and the registry add on create (phases, cluster IPs, labels)."""
        spec = obj.get("spec") or {}
        if rt.kind == "Namespace":
            obj["status"] = {"phase": "Active"}
        elif rt.kind == "Pod":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.kind == "Service" and spec.get("type") != "ExternalName":
            if not spec.get("clusterIP"):
                self._cluster_ip += 1
                ip = f"10.96.{self._cluster_ip // 250}.{self._cluster_ip % 250 + 1}"
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                for index, port in enumerate(spec.get("ports") or []):
                    port.setdefault("nodePort", 30000 + (self._cluster_ip * 7 + index) % 2700)
                if spec.get("type") == "LoadBalancer":
                    spec.setdefault("externalTrafficPolicy", "Cluster")
                    spec.setdefault("allocateLoadBalancerNodePorts", True)
            obj["status"] = {"loadBalancer": {}}
        elif rt.kind == "PersistentVolumeClaim":
            obj["status"] = {"phase": "Pending"}
        elif rt.kind == "Job":
            _default_job_selector(obj)

    # -- update / patch ---------------------------------------------------------

    def replace(
        self, rt: ResourceType, namespace: str, name: str, body: Any, opts: WriteOptions
    ) -> dict[str, Any]:
        obj = self._check_body(rt, namespace, body, name)
        self._check_unknown(rt, obj, opts, apply=False)
        with self.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is None:
                raise errors.not_found(rt, name)
            wanted_rv = obj["metadata"].get("resourceVersion")
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise errors.stale(rt, name)
            self._check_uid(rt, old, obj)
            return self._commit(rt, old, obj, opts)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        content_type: str,
        opts: WriteOptions,
    ) -> tuple[dict[str, Any], bool]:
        """Apply a patch; (object, created). Apply patches create missing objects."""
        accepted = PATCH_TYPES_CUSTOM if rt.custom else PATCH_TYPES_BUILTIN
        ctype = content_type.split(";")[0].strip()
        if ctype not in accepted:
            raise errors.unsupported_media_type(ctype, accepted)
        if ctype == "application/apply-patch+yaml":
            return self._apply(rt, namespace, name, raw, opts)
        try:
            patch = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from None
        with self.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is None:
                raise errors.not_found(rt, name)
            try:
                if ctype == "application/json-patch+json":
                    new = merge.json_patch(old, patch)
                elif ctype == "application/merge-patch+json":
                    new = merge.json_merge(old, patch)
                else:
                    new = merge.strategic_merge(old, patch)
            except (merge.PatchError, LookupError, ValueError, TypeError) as exc:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {exc}",
                ) from None
            if not isinstance(new, dict):
                raise errors.bad_request("the patch did not produce an object")
            new = self._check_body(rt, namespace, new, name)
            self._check_unknown(rt, new, opts, apply=False)
            wanted_rv = (
                (patch.get("metadata") or {}).get("resourceVersion")
                if isinstance(patch, dict)
                else None
            )
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise errors.stale(rt, name)
            return self._commit(rt, old, new, opts), False

    def _apply(
        self, rt: ResourceType, namespace: str, name: str, raw: bytes, opts: WriteOptions
    ) -> tuple[dict[str, Any], bool]:
        if not opts.manager:
            raise errors.bad_request("fieldManager is required for apply requests")
        try:
            config = yaml.safe_load(raw.decode() or "null")
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from None
        if not isinstance(config, dict):
            raise errors.bad_request("apply patch body must be an object")
        config = self._check_body(rt, namespace, config, name, apply=True)
        self._check_unknown(rt, config, opts, apply=True)
        if opts.subresource != "status" and rt.has_status:
            config.pop("status", None)
        for key in (*_SERVER_META, "managedFields"):
            if key != "resourceVersion":
                config["metadata"].pop(key, None)
        wanted_rv = config["metadata"].pop("resourceVersion", None)
        with self.lock:
            old = self.store.get(rt.key, namespace, name)
            if wanted_rv and (old is None or wanted_rv != old["metadata"]["resourceVersion"]):
                raise errors.stale(rt, name) if old else errors.not_found(rt, name)
            if old is None:
                self.check_namespace(rt, namespace, name)
                return self._create(rt, clone(config), opts, "Apply", config), True
            builtin = not rt.custom
            entries = clone(old["metadata"].get("managedFields") or [])
            live_view = merge.owned_view(old, opts.subresource, rt.has_status)
            config_view = merge.owned_view(config, opts.subresource, rt.has_status)
            applied = merge.leaves(config_view, builtin)
            conflicts: dict[str, list[str]] = {}
            for entry in entries:
                if (
                    entry.get("manager") == opts.manager
                    or entry.get("subresource") != opts.subresource
                ):
                    continue
                owned = merge.from_fields_v1(entry.get("fieldsV1") or {})
                clashing = []
                for path in sorted(owned & set(applied)):
                    if path[-1] == ".":
                        continue
                    found, live_value = merge.value_at(live_view, path)
                    if found and live_value != applied[path]:
                        clashing.append(path)
                if clashing and opts.force:
                    entry["fieldsV1"] = merge.to_fields_v1(owned - set(clashing))
                elif clashing:
                    for path in clashing:
                        conflicts.setdefault(merge.format_path(path), []).append(entry["manager"])
            if conflicts:
                raise _apply_conflict(rt, name, conflicts)
            new = merge.apply_merge(old, config, (), builtin)
            previous = _entry_fields(entries, opts.manager, "Apply", opts.subresource)
            others = set().union(
                *(
                    merge.from_fields_v1(e.get("fieldsV1") or {})
                    for e in entries
                    if not (e.get("manager") == opts.manager and e.get("operation") == "Apply")
                )
            )
            for path in merge.removal_order(previous - set(applied)):
                if path in others or merge.is_key_field(path):
                    continue
                if path[-1] == "." and any(o[: len(path) - 1] == path[:-1] for o in others):
                    continue
                merge.remove_at(new, path)
            _set_entry(entries, opts.manager, "Apply", opts.subresource, rt, set(applied))
            entries = [e for e in entries if e.get("fieldsV1")]
            new["metadata"]["managedFields"] = entries
            return self._commit(rt, old, new, opts, managed=entries), False

    def _commit(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        new: dict[str, Any],
        opts: WriteOptions,
        managed: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Store ``new`` in place of ``old`` with the server's rules; the stored object."""
        new = clone(new)
        meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
        for key in _SERVER_META:
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["name"], meta["namespace"] = old_meta["name"], old_meta.get("namespace")
        if meta["namespace"] is None:
            meta.pop("namespace")
        if opts.subresource == "status":
            status = new.get("status")
            new = clone(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            meta = new["metadata"]
        elif rt.has_status or rt.kind in ("Pod", "Namespace"):
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        schema.apply_defaults(rt, new)
        causes = schema.validate(rt, new, old)
        if causes:
            raise errors.invalid(rt, meta["name"], causes)
        if rt.kind == "Service":
            _keep_service_allocations(old, new)
        if rt.kind == "Job":
            _default_job_selector(new)
        if rt.has_generation and _spec_of(old, rt) != _spec_of(new, rt):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if managed is None:
            managed = _update_entries(rt, old, new, opts)
        meta["managedFields"] = managed
        if _same(old, new):
            return clone(old)
        if opts.dry_run:
            return new
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            gone = self.store.remove(rt.key, meta.get("namespace", ""), meta["name"])
            return gone or new
        return clone(self.store.put(rt.key, new))

    # -- delete -----------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        grace: int | None = None,
        preconditions: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete (or start deleting) an object; (object, finished)."""
        with self.lock:
            old = self.store.get(rt.key, namespace, name)
            if old is None:
                raise errors.not_found(rt, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise errors.conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, "
                    f"UID in object meta: {old['metadata']['uid']}",
                )
            if (
                pre.get("resourceVersion")
                and pre["resourceVersion"] != old["metadata"]["resourceVersion"]
            ):
                raise errors.conflict(
                    rt,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{old['metadata']['resourceVersion']}",
                )
            if dry_run:
                return clone(old), True
            obj = clone(old)
            meta = obj["metadata"]
            finalizers = list(meta.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if propagation == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            graceful = (
                rt.kind == "Pod"
                and (obj.get("spec") or {}).get("nodeName")
                and (obj.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            )
            if rt.kind == "Namespace":
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now()
                    obj["status"] = {"phase": "Terminating"}
                    self.store.put(rt.key, obj)
                return clone(obj), False
            if graceful and grace != 0:
                if meta.get("deletionTimestamp"):
                    return clone(old), False
                seconds = (
                    grace
                    if grace is not None
                    else obj["spec"].get("terminationGracePeriodSeconds", 30)
                )
                meta["deletionTimestamp"] = now()
                meta["deletionGracePeriodSeconds"] = seconds
                if finalizers:
                    meta["finalizers"] = finalizers
                return clone(self.store.put(rt.key, obj)), False
            if finalizers:
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = now()
                    meta["deletionGracePeriodSeconds"] = 0
                    meta["finalizers"] = finalizers
                    if rt.has_generation:
                        meta["generation"] = int(meta.get("generation", 1)) + 1
                    return clone(self.store.put(rt.key, obj)), False
                return clone(old), False
            gone = self.store.remove(rt.key, namespace, name)
            assert gone is not None
            return gone, True

    # -- controller writes ------------------------------------------------------

    def write(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        subresource: str | None = None,
        manager: str = CONTROLLER,
    ) -> dict[str, Any]:
        """A controller's update (main resource or status), skipped when nothing changed."""
        with self.lock:
            meta = obj["metadata"]
            old = self.store.get(rt.key, meta.get("namespace", ""), meta["name"])
            if old is None:
                return obj
            if subresource == "status" and obj.get("status") == old.get("status"):
                return clone(old)  # nothing to write: skip the bookkeeping
            if subresource is None and obj == old:
                return clone(old)
            opts = WriteOptions(manager=manager, subresource=subresource)
            return self._commit(rt, old, obj, opts)

    def controller_create(
        self, rt: ResourceType, obj: dict[str, Any], manager: str = CONTROLLER
    ) -> dict[str, Any] | None:
        """Create on behalf of a controller; None when it exists or its namespace is going."""
        try:
            return self.create(
                rt, obj["metadata"].get("namespace", ""), obj, WriteOptions(manager=manager)
            )
        except ApiError:
            return None

    # -- helpers ----------------------------------------------------------------

    def _check_body(
        self, rt: ResourceType, namespace: str, body: Any, name: str | None, apply: bool = False
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be an object")
        obj = clone(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if apply and (not api_version or not kind):
            raise errors.bad_request("apiVersion and kind must be set in an apply patch")
        if api_version and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if rt.namespaced:
            given = meta.get("namespace")
            if given and given != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if name is not None:
            given_name = meta.get("name")
            if given_name and given_name != name:
                raise errors.bad_request(
                    f"the name of the object ({given_name}) does not match the name on "
                    f"the URL ({name})"
                )
            meta["name"] = name
        return obj

    def _check_unknown(
        self, rt: ResourceType, obj: dict[str, Any], opts: WriteOptions, apply: bool
    ) -> None:
        if opts.validation not in VALIDATION_MODES:
            raise errors.bad_request(
                f'fieldValidation parameter unsupported: "{opts.validation}". '
                "Valid values are: Ignore, Warn, Strict"
            )
        if not rt.custom and rt.kind not in ("ControllerRevision", "CustomResourceDefinition"):
            self._check_types(rt, obj, apply)
        unknown = schema.unknown_fields(obj, schema.schema_for(rt))
        if not unknown:
            return
        if opts.validation == "Strict":
            meta = obj["metadata"]
            if apply:
                prefix = f"{meta['namespace']}/" if meta.get("namespace") else ""
                where = f"{prefix}{meta.get('name')}"
                paths = ", ".join("." + re.sub(r"\[(\d+)\]", r"[\1]", u) for u in unknown)
                message = (
                    f"failed to create typed patch object ({where}; {rt.api_version}, "
                    f"Kind={rt.kind}): "
                    f"{paths}: field not declared in schema"
                )
            else:  # as the decoder words it (kubectl create/replace show this line)
                message = (
                    f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                    "strict decoding error: " + ", ".join(f'unknown field "{u}"' for u in unknown)
                )
            raise ApiError(400, "BadRequest", message)
        if opts.validation == "Warn":
            opts.warnings += [f'unknown field "{u}"' for u in unknown]
        schema.drop_fields(obj, unknown)

    def _check_types(self, rt: ResourceType, obj: dict[str, Any], apply: bool) -> None:
        """Wrong scalar types fail decoding (400) whatever fieldValidation says."""
        problem = schema.decode_error(rt, obj)
        if problem:
            raise ApiError(
                400,
                "BadRequest",
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: {problem}',
            )
        wrong = schema.type_errors(obj)
        if not wrong:
            return
        where, expected, got = wrong[0]
        if apply:
            meta = obj["metadata"]
            prefix = f"{meta['namespace']}/" if meta.get("namespace") else ""
            wanted = "numeric (int or float)" if expected == "int32" else expected
            message = (
                f"failed to create typed patch object ({prefix}{meta.get('name')}; "
                f"{rt.api_version}, Kind={rt.kind}): .{where}: expected {wanted}, got {got}"
            )
        else:
            message = (
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: '
                f"cannot unmarshal {got} into Go struct field .{where} of type {expected}"
            )
        raise ApiError(400, "BadRequest", message)

    def _check_uid(self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> None:
        uid = new["metadata"].get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise errors.conflict(
                rt,
                old["metadata"]["name"],
                f"Precondition failed: UID in precondition: {uid}, "
                f"UID in object meta: {old['metadata']['uid']}",
            )


def _spec_of(obj: dict[str, Any], rt: ResourceType) -> Any:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _same(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(obj: dict[str, Any]) -> dict[str, Any]:
        out = dict(obj)
        meta = dict(out.get("metadata") or {})
        meta["managedFields"] = [
            {k: v for k, v in e.items() if k != "time"} for e in meta.get("managedFields") or []
        ]
        out["metadata"] = meta
        return out

    return strip(old) == strip(new)


def _entry_fields(
    entries: list[dict[str, Any]], manager: str, operation: str, subresource: str | None
) -> set[merge.FieldPath]:
    for entry in entries:
        if (entry.get("manager"), entry.get("operation"), entry.get("subresource")) == (
            manager,
            operation,
            subresource,
        ):
            return merge.from_fields_v1(entry.get("fieldsV1") or {})
    return set()


def _set_entry(
    entries: list[dict[str, Any]],
    manager: str,
    operation: str,
    subresource: str | None,
    rt: ResourceType,
    fields: set[merge.FieldPath],
) -> None:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": rt.api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": merge.to_fields_v1(fields),
    }
    if subresource:
        entry["subresource"] = subresource
    for index, existing in enumerate(entries):
        if (existing.get("manager"), existing.get("operation"), existing.get("subresource")) == (
            manager,
            operation,
            subresource,
        ):
            if merge.from_fields_v1(existing.get("fieldsV1") or {}) == fields:
                entry["time"] = existing.get("time", entry["time"])
            entries[index] = entry
            return
    if fields:
        entries.append(entry)


def _update_entries(
    rt: ResourceType, old: dict[str, Any], new: dict[str, Any], opts: WriteOptions
) -> list[dict[str, Any]]:
    """Ownership after a non-apply write: the writer takes what it changed."""
    builtin = not rt.custom
    before = merge.leaves(merge.owned_view(old, opts.subresource, rt.has_status), builtin)
    after = merge.leaves(merge.owned_view(new, opts.subresource, rt.has_status), builtin)
    changed = {p for p, v in after.items() if p not in before or before[p] != v}
    removed = set(before) - set(after)
    entries = clone(old["metadata"].get("managedFields") or [])
    if not changed and not removed:
        return entries
    for entry in entries:
        owned = merge.from_fields_v1(entry.get("fieldsV1") or {})
        kept = owned - changed - removed
        if kept != owned:
            entry["fieldsV1"] = merge.to_fields_v1(kept)
    mine = _entry_fields(entries, opts.manager, "Update", opts.subresource) | changed
    _set_entry(entries, opts.manager, "Update", opts.subresource, rt, mine - removed)
    return [e for e in entries if e.get("fieldsV1")]


def _apply_conflict(rt: ResourceType, name: str, conflicts: dict[str, list[str]]) -> ApiError:
    causes = []
    lines = []
    for path, managers in conflicts.items():
        for manager in managers:
            text = f'conflict with "{manager}" using {rt.api_version}'
            causes.append({"reason": "FieldManagerConflict", "message": text, "field": path})
            lines.append(f"- {text}: {path}")
    count = len(causes)
    plural = "conflict" if count == 1 else "conflicts"
    if count == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        message = f"Apply failed with {count} {plural}: " + "\n".join(lines)
    details: dict[str, Any] = {"name": name, "kind": rt.plural, "causes": causes}
    if rt.group:
        details["group"] = rt.group
    return ApiError(409, "Conflict", message, details)


def _keep_service_allocations(old: dict[str, Any], new: dict[str, Any]) -> None:
    old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
    for key in ("clusterIP", "clusterIPs"):
        if key in old_spec and not spec.get(key):
            spec[key] = old_spec[key]
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p for p in old_spec.get("ports") or []}
    for port in spec.get("ports") or []:
        previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
        if (
            previous
            and "nodePort" in previous
            and "nodePort" not in port
            and spec.get("type") in ("NodePort", "LoadBalancer")
        ):
            port["nodePort"] = previous["nodePort"]


def _default_job_selector(obj: dict[str, Any]) -> None:
    """Jobs get a selector on their own uid, and templates the matching labels."""
    spec = obj.get("spec") or {}
    if spec.get("manualSelector"):
        return
    meta = obj["metadata"]
    uid, name = meta.get("uid", ""), meta.get("name", "")
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
