"""A fake scheduler and kubelet: pods get nodes, pulled images, containers that live and die.

Each pod follows a small state machine per container (pull, start, run,
exit, back off) whose pace comes from ``Timings`` and whose fate comes from
the pod annotation ``sandbox.gitops-steps.dev/behavior`` (or, for one
container, ``sandbox.gitops-steps.dev/behavior.NAME``). Images on the
``--registry`` host are looked up for real (``HEAD /v2/.../manifests/...``);
other images are taken as present.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from steps.sandbox.kube import apierrors as errors
from steps.sandbox.kube.api import Cluster, now
from steps.sandbox.kube.events import EventRecorder
from steps.sandbox.kube.store import clone
from steps.sandbox.kube.timings import Timings

BEHAVIOR = "sandbox.gitops-steps.dev/behavior"
BEHAVIORS = (
    "healthy",
    "crash",
    "never-ready",
    "slow-start",
    "oom",
    "unschedulable",
    "run-error",  # the runtime cannot start the process: RunContainerError, StartError 128
    "create-error",  # the runtime cannot create the container: CreateContainerError
)
RUN_ERROR = (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
    'runc create failed: unable to start container process: exec: "/app/server": stat '
    "/app/server: no such file or directory: unknown"
)
CREATE_ERROR = "failed to generate container spec: failed to generate spec: no command specified"
PODS = ("", "pods")
MANIFEST_ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
_REFERENCE = re.compile(
    r"^(?:(?P<host>[a-zA-Z0-9.-]+(?::\d+)?)/)?(?P<path>[a-z0-9]+(?:[._-]+[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*)(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass
class ContainerSim:
    name: str
    image: str
    behavior: str = "healthy"
    stage: str = "pull"  # pull | pull-backoff | starting | running | backoff | done
    next_at: float = 0.0
    restarts: int = 0
    pull_failures: int = 0
    started_at: str | None = None
    exit_at: float | None = None
    ready_at: float | None = None
    ready: bool = False
    waiting: tuple[str, str] = ("ContainerCreating", "")
    terminated: dict[str, Any] | None = None
    last_state: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""
    image_id: str = ""
    instances: int = 0
    unhealthy_at: float = 0.0
    shown_until: float = 0.0  # RunContainerError shows this long before CrashLoopBackOff
    backoff_message: str = ""


@dataclass
class PodSim:
    uid: str
    containers: dict[str, ContainerSim]
    behavior: str
    scheduled: bool = False
    next_schedule: float = 0.0
    killing: bool = False
    delete_at: float = 0.0
    init_done_at: float | None = None
    ip: str = ""
    mounted: bool = False
    next_mount: float = 0.0
    idle_at: str = ""  # the pod's resourceVersion when it last had nothing due


@dataclass(frozen=True)
class ImageRef:
    host: str
    path: str
    reference: str  # tag or digest
    text: str


def parse_image(image: str) -> ImageRef | None:
    """Split an image reference as the runtime would; None when it is invalid."""
    match = _REFERENCE.match(image)
    if not match:
        return None
    host = match.group("host")
    path = match.group("path")
    if host and "." not in host and ":" not in host and host != "localhost":
        path, host = f"{host}/{path}", None
    host = host or "docker.io"
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    reference = match.group("digest") or match.group("tag") or "latest"
    return ImageRef(host, path, reference, image)


class Kubelet:
    """Schedules and runs every pod of the cluster, one tick at a time."""

    def __init__(
        self,
        cluster: Cluster,
        events: EventRecorder,
        timings: Timings,
        nodes: list[str],
        registry: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.events = events
        self.timings = timings
        self.nodes = nodes
        self.registry = registry
        self.pods: dict[str, PodSim] = {}
        self.ready_since: dict[str, float] = {}
        self._next_node = 0
        self._ip = 0
        self._logs: dict[tuple[str, str, int], list[str]] = {}

    @property
    def rt(self) -> Any:
        return self.cluster.registry.lookup("", "v1", "pods")

    # -- the loop -----------------------------------------------------------

    def tick(self) -> None:
        pulls = self._due_pulls()
        found = {image: self._image_present(image) for image in pulls}
        with self.cluster.lock:
            live = set()
            for pod in self.cluster.store.items(PODS):
                uid = pod["metadata"]["uid"]
                live.add(uid)
                sim = self.pods.get(uid)
                if sim is not None and sim.idle_at == pod["metadata"]["resourceVersion"]:
                    continue  # nothing due and nothing changed since the last pass
                self._sync(clone(pod), found)
                stored = self.cluster.store.get(
                    PODS, pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
                )
                sim = self.pods.get(uid)
                if sim is not None and stored is not None and self._idle(sim, stored):
                    sim.idle_at = stored["metadata"]["resourceVersion"]
            for uid in set(self.pods) - live:
                self.pods.pop(uid, None)
                self.ready_since.pop(uid, None)

    def _idle(self, sim: PodSim, pod: dict[str, Any]) -> bool:
        """True when no timer of this pod is pending: it only changes if the pod does."""
        if pod["metadata"].get("deletionTimestamp") or not pod["spec"].get("nodeName"):
            return False
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return True
        if not sim.scheduled or not sim.mounted:
            return False
        if any(c.behavior == "never-ready" for c in sim.containers.values()):
            return False
        return all(
            c.stage == "done"
            or (c.stage == "running" and c.exit_at is None and (c.ready or c.ready_at is None))
            for c in sim.containers.values()
        )

    def _due_pulls(self) -> set[str]:
        at = time.monotonic()
        with self.cluster.lock:
            return {
                c.image
                for sim in self.pods.values()
                if sim.scheduled and not sim.killing
                for c in sim.containers.values()
                if c.stage == "pull" and c.next_at <= at
            }

    def _image_present(self, image: str) -> tuple[bool, str, str]:
        """(present, digest, error) for an image; only the --registry host is asked."""
        ref = parse_image(image)
        if ref is None:
            return False, "", "invalid"
        fake_digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
        if self.registry is None or not _same_host(ref.host, self.registry):
            return True, fake_digest, ""
        try:
            connection = http.client.HTTPConnection(self.registry, timeout=3.0)
            try:
                connection.request(
                    "HEAD",
                    f"/v2/{ref.path}/manifests/{ref.reference}",
                    headers={"Accept": MANIFEST_ACCEPT},
                )
                response = connection.getresponse()
                response.read()
                digest = response.getheader("Docker-Content-Digest") or fake_digest
                status = response.status
            finally:
                connection.close()
        except OSError as exc:
            return False, "", f"dial tcp {self.registry}: {exc}"
        if status == 200:
            return True, digest, ""
        if status == 404:
            return False, "", "not found"
        return False, "", f"unexpected status code {status}"

    # -- one pod ------------------------------------------------------------

    def _sim(self, pod: dict[str, Any]) -> PodSim:
        uid = pod["metadata"]["uid"]
        sim = self.pods.get(uid)
        if sim is None:
            annotations = pod["metadata"].get("annotations") or {}
            behavior = annotations.get(BEHAVIOR, "healthy")
            containers = {
                c["name"]: ContainerSim(
                    c["name"],
                    str(c.get("image", "")),
                    behavior=annotations.get(f"{BEHAVIOR}.{c['name']}", behavior),
                )
                for c in pod["spec"].get("containers") or []
            }
            sim = PodSim(uid, containers, behavior)
            self.pods[uid] = sim
        return sim

    def _sync(self, pod: dict[str, Any], found: dict[str, tuple[bool, str, str]]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        status = pod.get("status") or {}
        sim = self._sim(pod)
        at = time.monotonic()
        if meta.get("deletionTimestamp"):
            self._terminate(pod, sim, at)
            return
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        if not spec.get("nodeName"):
            self._schedule(pod, sim, at)
            return
        if not sim.mounted:
            if not self._mount(pod, sim, at):
                return
            sim.mounted = True
        if not sim.scheduled:
            sim.scheduled = True
            self._start_pod(pod, sim, at)
        for container in sim.containers.values():
            self._advance(pod, sim, container, at, found)
        self._write_status(pod, sim, at)

    def _schedule(self, pod: dict[str, Any], sim: PodSim, at: float) -> None:
        if at < sim.next_schedule:
            return
        selector = pod["spec"].get("nodeSelector") or {}
        pinned = target_node(pod)
        nodes = [
            n
            for n in self._nodes()
            if _labels_match(selector, n) and pinned in (None, n["metadata"]["name"])
        ]
        if sim.behavior == "unschedulable" or not nodes:
            total = len(self.nodes)
            why = (
                f"0/{total} nodes are available: {total} node(s) didn't match Pod's node "
                f"affinity/selector. preemption: 0/{total} nodes are available: {total} "
                "Preemption is not helpful for scheduling."
            )
            sim.next_schedule = at + self.timings.scheduling_retry
            status = pod.setdefault("status", {})
            status["phase"] = "Pending"
            _set_condition(status, "PodScheduled", "False", "Unschedulable", why)
            self._put_status(pod)
            self.events.record(pod, "Warning", "FailedScheduling", why, "default-scheduler")
            return
        node = nodes[self._next_node % len(nodes)]["metadata"]["name"]
        self._next_node += 1
        pod["spec"]["nodeName"] = node
        rt = self.rt
        stored = self.cluster.write(rt, pod, manager="kube-scheduler")
        status = stored.setdefault("status", {})
        _set_condition(status, "PodScheduled", "True")
        self._put_status(stored)
        ns, name = pod["metadata"].get("namespace"), pod["metadata"]["name"]
        self.events.record(
            stored,
            "Normal",
            "Scheduled",
            f"Successfully assigned {ns}/{name} to {node}",
            "default-scheduler",
        )

    def _mount(self, pod: dict[str, Any], sim: PodSim, at: float) -> bool:
        """Whether every configMap/secret volume exists; FailedMount events until they do."""
        ns = pod["metadata"].get("namespace", "")
        for volume in pod["spec"].get("volumes") or []:
            for volume_field, kind, resource, key in (
                ("configMap", "configmap", "configmaps", "name"),
                ("secret", "secret", "secrets", "secretName"),
            ):
                source = volume.get(volume_field)
                if not isinstance(source, dict) or source.get("optional"):
                    continue
                name = source.get(key, "")
                if self.cluster.store.get(("", resource), ns, name) is not None:
                    continue
                if at >= sim.next_mount:
                    sim.next_mount = at + self.timings.scheduling_retry
                    self.events.record(
                        pod,
                        "Warning",
                        "FailedMount",
                        f'MountVolume.SetUp failed for volume "{volume.get("name")}" : '
                        f'{kind} "{name}" not found',
                        "kubelet",
                        pod["spec"]["nodeName"],
                    )
                    for c in sim.containers.values():
                        c.waiting = ("ContainerCreating", "")
                    status = pod.setdefault("status", {})
                    status["phase"] = "Pending"
                    _set_condition(status, "PodScheduled", "True")
                    self._write_status(pod, sim, at)
                return False
        return True

    def _missing_config(self, pod: dict[str, Any], container: str) -> str | None:
        """The error of a container whose env refers to a missing ConfigMap, Secret or key."""
        ns = pod["metadata"].get("namespace", "")
        containers = pod["spec"].get("containers") or []
        spec: dict[str, Any] = next((c for c in containers if c.get("name") == container), {})
        refs: list[tuple[str, dict[str, Any], bool]] = []
        for env in spec.get("env") or []:
            source = env.get("valueFrom") or {}
            if isinstance(source.get("configMapKeyRef"), dict):
                refs.append(("ConfigMap", source["configMapKeyRef"], True))
            if isinstance(source.get("secretKeyRef"), dict):
                refs.append(("Secret", source["secretKeyRef"], True))
        for env_from in spec.get("envFrom") or []:
            if isinstance(env_from.get("configMapRef"), dict):
                refs.append(("ConfigMap", env_from["configMapRef"], False))
            if isinstance(env_from.get("secretRef"), dict):
                refs.append(("Secret", env_from["secretRef"], False))
        for kind, ref, keyed in refs:
            if ref.get("optional"):
                continue
            name = ref.get("name", "")
            found = self.cluster.store.get(("", kind.lower() + "s"), ns, name)
            if found is None:
                return f'{kind.lower()} "{name}" not found'
            keys = {**(found.get("data") or {}), **(found.get("binaryData") or {})}
            if keyed and ref.get("key") not in keys:
                return f"couldn't find key {ref.get('key')} in {kind} {ns}/{name}"
        return None

    def _nodes(self) -> list[dict[str, Any]]:
        return list(self.cluster.store.items(("", "nodes")))

    def _start_pod(self, pod: dict[str, Any], sim: PodSim, at: float) -> None:
        self._ip += 1
        sim.ip = f"10.244.{(self._ip // 250) % 250}.{self._ip % 250 + 2}"
        has_init = bool(pod["spec"].get("initContainers"))
        sim.init_done_at = at + (self.timings.pull + self.timings.start if has_init else 0.0)
        for container in sim.containers.values():
            container.next_at = sim.init_done_at

    def _advance(
        self,
        pod: dict[str, Any],
        sim: PodSim,
        c: ContainerSim,
        at: float,
        found: dict[str, tuple[bool, str, str]],
    ) -> None:
        node = pod["spec"]["nodeName"]
        where = f"spec.containers{{{c.name}}}"
        t = self.timings
        if c.stage == "pull" and at >= c.next_at:
            if c.image not in found:
                return  # asked next tick
            present, digest, error = found[c.image]
            if error == "invalid":
                c.waiting = (
                    "InvalidImageName",
                    f'Failed to apply default image tag "{c.image}": couldn\'t parse image name '
                    f'"{c.image}": invalid reference format',
                )
                c.stage = "done"
                self.events.record(
                    pod, "Warning", "InspectFailed", c.waiting[1], "kubelet", node, where
                )
                self.events.record(
                    pod, "Warning", "Failed", "Error: InvalidImageName", "kubelet", node, where
                )
                return
            self.events.record(
                pod, "Normal", "Pulling", f'Pulling image "{c.image}"', "kubelet", node, where
            )
            if present:
                c.image_id = _image_id(c.image, digest)
                millis = int(t.pull * 1000)
                self.events.record(
                    pod,
                    "Normal",
                    "Pulled",
                    f'Successfully pulled image "{c.image}" in {millis}ms ({millis}ms including '
                    "waiting). Image size: 3277383 bytes.",
                    "kubelet",
                    node,
                    where,
                )
                c.stage, c.next_at = "starting", at + t.start
                c.waiting = ("ContainerCreating", "")
            else:
                ref = parse_image(c.image)
                full = (
                    f"{ref.host}/{ref.path}:{ref.reference}"
                    if ref and not ref.reference.startswith("sha256:")
                    else c.image
                )
                message = (
                    f'failed to pull and unpack image "{full}": failed to resolve reference '
                    f'"{full}": {full}: {error}'
                )
                text = (
                    f'Failed to pull image "{c.image}": rpc error: code = NotFound desc = {message}'
                )
                c.waiting = ("ErrImagePull", f"rpc error: code = NotFound desc = {message}")
                self.events.record(pod, "Warning", "Failed", text, "kubelet", node, where)
                self.events.record(
                    pod, "Warning", "Failed", "Error: ErrImagePull", "kubelet", node, where
                )
                c.pull_failures += 1
                c.stage, c.next_at = "pull-backoff", at + min(t.backoff, t.backoff_cap) / 2
        elif c.stage == "pull-backoff" and at >= c.next_at:
            if c.waiting[0] == "ErrImagePull":
                c.waiting = ("ImagePullBackOff", f'Back-off pulling image "{c.image}"')
                self.events.record(pod, "Normal", "BackOff", c.waiting[1], "kubelet", node, where)
                self.events.record(
                    pod, "Warning", "Failed", "Error: ImagePullBackOff", "kubelet", node, where
                )
                c.next_at = at + _backoff(t, c.pull_failures)
            else:
                c.stage, c.next_at = "pull", at
        elif c.stage == "starting" and at >= c.next_at:
            missing = self._missing_config(pod, c.name)
            if missing is not None:
                c.waiting = ("CreateContainerConfigError", missing)
                self.events.record(
                    pod, "Warning", "Failed", f"Error: {missing}", "kubelet", node, where
                )
                c.next_at = at + _backoff(t, 1)
                return
            self._run(pod, sim, c, at, node, where)
        elif c.stage == "running":
            if c.exit_at is not None and at >= c.exit_at:
                self._exit(pod, sim, c, at, node, where)
            elif c.ready_at is not None and at >= c.ready_at and not c.ready:
                c.ready = True
            elif c.behavior == "never-ready" and at >= c.unhealthy_at:
                c.unhealthy_at = at + max(t.backoff, 0.5)
                self.events.record(
                    pod,
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503",
                    "kubelet",
                    node,
                    where,
                )
        elif c.stage == "backoff" and c.waiting[0] == "RunContainerError" and at >= c.shown_until:
            c.waiting = ("CrashLoopBackOff", c.backoff_message)
        elif c.stage == "backoff" and at >= c.next_at:
            self.events.record(
                pod,
                "Normal",
                "Pulled",
                f'Container image "{c.image}" already present on machine',
                "kubelet",
                node,
                where,
            )
            c.stage, c.next_at = "starting", at + t.start

    def _run(
        self, pod: dict[str, Any], sim: PodSim, c: ContainerSim, at: float, node: str, where: str
    ) -> None:
        t = self.timings
        if c.behavior == "create-error":
            c.waiting = ("CreateContainerError", CREATE_ERROR)
            self.events.record(
                pod, "Warning", "Failed", f"Error: {CREATE_ERROR}", "kubelet", node, where
            )
            c.next_at = at + _backoff(t, 1)
            return
        if c.behavior == "run-error":
            self._start_failed(pod, sim, c, at, node, where)
            return
        self.events.record(
            pod, "Normal", "Created", f"Created container: {c.name}", "kubelet", node, where
        )
        self.events.record(
            pod, "Normal", "Started", f"Started container {c.name}", "kubelet", node, where
        )
        c.stage = "running"
        c.started_at = now()
        c.container_id = "containerd://" + secrets.token_hex(32)
        c.instances += 1
        c.waiting = ("", "")
        c.ready = False
        restart = pod["spec"].get("restartPolicy", "Always")
        behavior = c.behavior
        c.exit_at = None
        c.ready_at = None
        c.unhealthy_at = at + t.ready
        if behavior in ("crash", "oom"):
            c.exit_at = at + t.crash_after
        elif restart != "Always":
            c.exit_at = at + t.job_run
        if behavior in ("healthy", "unschedulable"):
            c.ready_at = at + t.ready
        elif behavior == "slow-start":
            c.ready_at = at + t.slow_start
        self._logs[(sim.uid, c.name, c.instances)] = _log_lines(behavior, c.name, c.image, restart)

    def _start_failed(
        self, pod: dict[str, Any], sim: PodSim, c: ContainerSim, at: float, node: str, where: str
    ) -> None:
        """The process never started: StartError in lastState, RunContainerError, then back-off."""
        stamp = now()
        c.container_id = "containerd://" + secrets.token_hex(32)
        c.restarts += 1
        c.last_state = {
            "terminated": {
                "exitCode": 128,
                "reason": "StartError",
                "message": RUN_ERROR,
                "startedAt": "1970-01-01T00:00:00Z",
                "finishedAt": stamp,
                "containerID": c.container_id,
            }
        }
        self.events.record(
            pod, "Normal", "Created", f"Created container: {c.name}", "kubelet", node, where
        )
        self.events.record(pod, "Warning", "Failed", f"Error: {RUN_ERROR}", "kubelet", node, where)
        delay = _backoff(self.timings, c.restarts)
        ns, name = pod["metadata"].get("namespace"), pod["metadata"]["name"]
        c.backoff_message = (
            f"back-off {go_duration(delay)} restarting failed container={c.name} "
            f"pod={name}_{ns}({sim.uid})"
        )
        c.waiting = ("RunContainerError", RUN_ERROR)
        c.shown_until = at + delay / 2
        c.stage, c.next_at = "backoff", at + delay

    def _exit(
        self, pod: dict[str, Any], sim: PodSim, c: ContainerSim, at: float, node: str, where: str
    ) -> None:
        behavior = c.behavior
        if behavior == "oom":
            code, reason = 137, "OOMKilled"
        elif behavior == "crash":
            code, reason = 1, "Error"
        else:
            code, reason = 0, "Completed"
        c.terminated = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": now(),
            "containerID": c.container_id,
        }
        c.ready = False
        c.exit_at = None
        restart = pod["spec"].get("restartPolicy", "Always")
        if restart == "Always" or (restart == "OnFailure" and code != 0):
            c.restarts += 1
            c.last_state = {"terminated": c.terminated}
            c.terminated = None
            delay = _backoff(self.timings, c.restarts)
            ns, name = pod["metadata"].get("namespace"), pod["metadata"]["name"]
            c.waiting = (
                "CrashLoopBackOff",
                f"back-off {go_duration(delay)} restarting failed container={c.name} "
                f"pod={name}_{ns}({sim.uid})",
            )
            self.events.record(
                pod,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod {name}_{ns}({sim.uid})",
                "kubelet",
                node,
                where,
            )
            c.stage, c.next_at = "backoff", at + delay
        else:
            c.stage = "done"

    def _terminate(self, pod: dict[str, Any], sim: PodSim, at: float) -> None:
        meta = pod["metadata"]
        if not pod["spec"].get("nodeName") or (pod.get("status") or {}).get("phase") in (
            "Succeeded",
            "Failed",
        ):
            self.cluster.store.remove(PODS, meta.get("namespace", ""), meta["name"])
            return
        if not sim.killing:
            sim.killing = True
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            sim.delete_at = at + min(grace, self.timings.terminate)
            node = pod["spec"]["nodeName"]
            for c in sim.containers.values():
                if c.stage == "running":
                    self.events.record(
                        pod,
                        "Normal",
                        "Killing",
                        f"Stopping container {c.name}",
                        "kubelet",
                        node,
                        f"spec.containers{{{c.name}}}",
                    )
                c.ready = False
            self._write_status(pod, sim, at)
            return
        if at >= sim.delete_at and not meta.get("finalizers"):
            self.cluster.store.remove(PODS, meta.get("namespace", ""), meta["name"])

    # -- status -------------------------------------------------------------

    def _write_status(self, pod: dict[str, Any], sim: PodSim, at: float) -> None:
        spec = pod["spec"]
        status = pod.setdefault("status", {})
        statuses = []
        containers = [
            sim.containers[c["name"]]
            for c in spec.get("containers") or []
            if c["name"] in sim.containers
        ]
        for c in containers:
            entry: dict[str, Any] = {
                "name": c.name,
                "image": c.image,
                "imageID": c.image_id,
                "ready": c.ready,
                "restartCount": c.restarts,
                "started": c.stage == "running",
                "lastState": clone(c.last_state),
            }
            if c.stage == "running":
                entry["state"] = {"running": {"startedAt": c.started_at}}
                entry["containerID"] = c.container_id
            elif c.terminated is not None:
                entry["state"] = {"terminated": c.terminated}
                entry["containerID"] = c.container_id
            else:
                waiting: dict[str, Any] = {"reason": c.waiting[0]}
                if c.waiting[1]:
                    waiting["message"] = c.waiting[1]
                entry["state"] = {"waiting": waiting}
                if c.container_id:
                    entry["containerID"] = c.container_id
            statuses.append(entry)
        status["containerStatuses"] = statuses
        if spec.get("initContainers"):
            done = sim.init_done_at is not None and at >= sim.init_done_at
            status["initContainerStatuses"] = [
                {
                    "name": ic["name"],
                    "image": ic.get("image", ""),
                    "imageID": _image_id(str(ic.get("image", "")), ""),
                    "ready": done,
                    "restartCount": 0,
                    "started": False,
                    "lastState": {},
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
                    if done
                    else {"waiting": {"reason": "PodInitializing"}},
                }
                for ic in spec["initContainers"]
            ]
        initialized = sim.init_done_at is None or at >= sim.init_done_at
        ever_started = all(c.instances > 0 for c in containers)
        finished = containers and all(
            c.stage == "done" and c.terminated is not None for c in containers
        )
        status["phase"] = _phase(containers, spec.get("restartPolicy", "Always"), initialized)
        all_ready = bool(containers) and all(c.ready for c in containers) and not sim.killing
        unready = [c.name for c in containers if not c.ready]
        node_index = self.nodes.index(spec["nodeName"]) if spec["nodeName"] in self.nodes else 0
        status["hostIP"] = f"127.0.0.{100 + node_index + 1}"
        status["hostIPs"] = [{"ip": status["hostIP"]}]
        if ever_started or any(c.instances for c in containers):
            status["podIP"] = sim.ip
            status["podIPs"] = [{"ip": sim.ip}]
        status.setdefault("startTime", now())
        _set_condition(status, "PodReadyToStartContainers", "True")
        if initialized:
            _set_condition(status, "Initialized", "True")
        else:
            names = [ic["name"] for ic in spec.get("initContainers") or []]
            _set_condition(
                status,
                "Initialized",
                "False",
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(names)}]",
            )
        if finished:
            _set_condition(status, "ContainersReady", "False", "PodCompleted", "")
            _set_condition(status, "Ready", "False", "PodCompleted", "")
        elif all_ready:
            _set_condition(status, "ContainersReady", "True")
            _set_condition(status, "Ready", "True")
        else:
            message = f"containers with unready status: [{' '.join(unready)}]"
            _set_condition(status, "ContainersReady", "False", "ContainersNotReady", message)
            _set_condition(status, "Ready", "False", "ContainersNotReady", message)
        _set_condition(status, "PodScheduled", "True")
        uid = pod["metadata"]["uid"]
        if all_ready:
            self.ready_since.setdefault(uid, at)
        else:
            self.ready_since.pop(uid, None)
        self._put_status(pod)

    def _put_status(self, pod: dict[str, Any]) -> None:
        self.cluster.write(self.rt, pod, subresource="status", manager="kubelet")

    # -- logs ----------------------------------------------------------------

    def logs(self, pod: dict[str, Any], container: str, previous: bool) -> list[str]:
        """The lines of a container's current (or previous) instance, as kubelet serves them."""
        with self.cluster.lock:
            sim = self.pods.get(pod["metadata"]["uid"])
            c = sim.containers.get(container) if sim else None
            name = pod["metadata"]["name"]
            if c is None or c.instances == 0:
                reason = c.waiting[0] if c else "ContainerCreating"
                if c and reason in ("ErrImagePull", "ImagePullBackOff"):
                    reason = "trying and failing to pull image"
                raise errors.bad_request(
                    f'container "{container}" in pod "{name}" is waiting to start: {reason}'
                )
            instance = c.instances
            if previous:
                if c.restarts == 0 or (c.stage == "running" and instance < 2):
                    raise errors.bad_request(
                        f'previous terminated container "{container}" in pod "{name}" not found'
                    )
                instance = instance - 1 if c.stage == "running" else instance
            return list(self._logs.get((sim.uid, container, instance), [])) if sim else []

    def running(self, pod: dict[str, Any], container: str) -> int | None:
        """The running instance's number (for ``logs -f``), None once it is not running."""
        with self.cluster.lock:
            sim = self.pods.get(pod["metadata"]["uid"])
            c = sim.containers.get(container) if sim else None
            if c is None or c.stage != "running":
                return None
            return c.instances


def _phase(containers: list[ContainerSim], restart: str, initialized: bool) -> str:
    """The pod phase from its containers, by kubelet's own rules (getPhase)."""
    running = stopped = waiting = failed = 0
    for c in containers:
        if c.stage == "running":
            running += 1
        elif c.terminated is not None:
            stopped += 1
            failed += 1 if c.terminated.get("exitCode", 0) != 0 else 0
        elif c.last_state.get("terminated"):
            stopped += 1  # restarting: it ran before
        else:
            waiting += 1
    if not initialized or waiting or not containers:
        return "Pending"
    if running:
        return "Running"
    if restart == "Always":
        return "Running"
    if all(c.terminated is not None for c in containers):
        return (
            "Failed" if failed and restart == "Never" else "Succeeded" if not failed else "Running"
        )
    return "Running"


def _same_host(host: str, registry: str) -> bool:
    """``localhost:5000`` and ``127.0.0.1:5000`` name the same loopback registry."""
    loopback = {"localhost", "127.0.0.1"}
    name, _, port = host.partition(":")
    other, _, other_port = registry.partition(":")
    return host == registry or (name in loopback and other in loopback and port == other_port)


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (``10s``, ``1m20s``, ``5m0s``, ``300ms``), as the kubelet does."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms" if seconds > 0 else "0s"
    whole = int(seconds)
    frac = f"{seconds - whole:.3f}"[1:].rstrip("0").rstrip(".")
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{secs}{frac}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def _backoff(t: Timings, failures: int) -> float:
    return float(min(t.backoff * 2 ** max(failures - 1, 0), t.backoff_cap))


def _image_id(image: str, digest: str) -> str:
    ref = parse_image(image)
    if ref is None:
        return ""
    digest = digest or "sha256:" + hashlib.sha256(image.encode()).hexdigest()
    return f"{ref.host}/{ref.path}@{digest}"


def _labels_match(selector: dict[str, str], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _set_condition(
    status: dict[str, Any],
    type_: str,
    value: str,
    reason: str | None = None,
    message: str | None = None,
) -> None:
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == type_:
            if condition["status"] != value:
                condition["lastTransitionTime"] = now()
            condition["status"] = value
            for key, given in (("reason", reason), ("message", message)):
                if given:
                    condition[key] = given
                else:
                    condition.pop(key, None)
            return
    entry: dict[str, Any] = {
        "type": type_,
        "status": value,
        "lastProbeTime": None,
        "lastTransitionTime": now(),
    }
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    conditions.append(entry)


def _log_lines(behavior: str, container: str, image: str, restart: str) -> list[str]:
    stamp = now()
    lines = [
        f"{stamp} INFO starting {container} ({image})",
        f"{stamp} INFO loading configuration from /etc/{container}/config.yaml",
    ]
    if behavior == "crash":
        lines += [
            f"{stamp} ERROR required setting DATABASE_URL is not set",
            "panic: configuration invalid: DATABASE_URL is required",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/src/cmd/server/main.go:42 +0x1d4",
            "exit status 1",
        ]
    elif behavior == "oom":
        lines += [
            f"{stamp} INFO warming cache",
            "fatal error: runtime: out of memory",
        ]
    elif restart != "Always":
        lines += [f"{stamp} INFO processing batch", f"{stamp} INFO done: 42 items processed"]
    else:
        lines += [f"{stamp} INFO listening on :8080", f"{stamp} INFO ready to serve requests"]
    return lines


def random_pod_name(prefix: str) -> str:
    """``PREFIX-xxxxx``, as ReplicaSets, DaemonSets and Jobs name their pods."""
    from steps.sandbox.kube.api import random_suffix

    return f"{prefix}-{random_suffix()}"


def target_node(pod: dict[str, Any]) -> str | None:
    """The node a pod runs on, or the one a DaemonSet's node affinity pins it to."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    for term in affinity.get("nodeSelectorTerms") or []:
        for match in term.get("matchFields") or []:
            if match.get("key") == "metadata.name" and match.get("values"):
                return str(match["values"][0])
    return None
