"""A Kubernetes API emulator on loopback, for tests, benchmarks and the demo.

No real API server can run on our machines, so ``gitops-verify-rollout`` is
tested against this: real HTTP, a generated kubeconfig, the official client.
It keeps objects in memory (``store``), changes them with the API server's
rules (``api``), serves them over HTTP with watches (``server``), and runs
controllers (``controllers``, ``workloads``, ``crds``) and a fake kubelet
(``kubelet``) on a short tick, so rollouts really progress, stall and fail.

    with KubeEmulator(timings=Timings.fast(), registry="127.0.0.1:5000") as kube:
        api = kubernetes.config.new_client_from_config(str(kube.kubeconfig))
        kube.faults.fail(r"/deployments", status=500, count=2)  # the next 2 matching requests
        ...  # the stage under test talks to kube.url; kube.objects("pods") reads the store

``Timings()`` (the default) backs off as a real kubelet does (10 s doubling to
5 min); tests ask for ``Timings.fast()``. OpenAPI v3, server-side Tables and
the real kubectl's everyday commands are served; docs/EMULATOR.md lists where
the emulator still differs from a real cluster.

Pod-template annotation ``sandbox.gitops-steps.dev/behavior`` picks what the
kubelet does with a pod: healthy, crash, never-ready, slow-start, oom,
unschedulable, run-error, create-error (see ``kubelet``).
"""

from __future__ import annotations

import argparse
import atexit
import base64
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from steps.sandbox.kube.api import Cluster, WriteOptions
from steps.sandbox.kube.controllers import DEFAULT_STORAGE_CLASS, PROVISIONER, Controllers
from steps.sandbox.kube.events import EventRecorder
from steps.sandbox.kube.faults import FaultInjector
from steps.sandbox.kube.kubelet import BEHAVIOR, BEHAVIORS, Kubelet
from steps.sandbox.kube.network import api_service
from steps.sandbox.kube.server import ApiServer
from steps.sandbox.kube.store import HISTORY, clone
from steps.sandbox.kube.timings import Timings
from steps.sandbox.kube.tls import make_certificate
from steps.sandbox.service import Service

__all__ = ["BEHAVIOR", "BEHAVIORS", "FaultInjector", "KubeEmulator", "Timings", "main"]

HOST = "127.0.0.1"
CONTEXT = "sandbox"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class KubeEmulator(Service):
    """The emulator: an API server on 127.0.0.1 plus controllers and a kubelet.

    ``start()`` serves, writes the kubeconfig (context ``sandbox``, no
    credentials) and starts the controller loop; ``stop()`` undoes it all.
    ``port=0`` picks a free port; ``kubeconfig=None`` writes one in a temp dir.
    ``tls=True`` serves HTTPS under a throwaway CA (in the kubeconfig, and in
    ``ca_pem``), as a GKE endpoint does, and the kubeconfig's user gets an
    admin client certificate (kubectl prompts for a password otherwise);
    ``token`` makes every request need a bearer token (any value: tests read
    ``tokens_seen`` to check which arrived) and puts that one in the kubeconfig
    instead.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        registry: str | None = None,
        timings: Timings | None = None,
        nodes: int = 3,
        kubeconfig: Path | None = None,
        history: int = HISTORY,
        tls: bool = False,
        token: str | None = None,
    ) -> None:
        self.port = port
        self.registry = registry
        self.timings = timings or Timings()
        self.history = history
        self.tls = tls
        self.token = token
        self.ca_pem: str | None = None  # with tls: the CA that signed the server certificate
        self._client_cert: tuple[str, str] | None = None  # with tls: (cert, key) PEM
        self._kubeconfig = Path(kubeconfig) if kubeconfig is not None else None
        self._tempdir: Path | None = None
        self.faults = FaultInjector()
        self.cluster = Cluster(history)
        self.events = EventRecorder(self.cluster)
        self.kubelet = Kubelet(
            self.cluster,
            self.events,
            self.timings,
            [f"node-{i + 1}" for i in range(nodes)],
            registry,
        )
        self.controllers = Controllers(self.cluster, self.kubelet, self.events, self.timings)
        self._server: ApiServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.loop_errors: list[BaseException] = []

    # -- lifecycle ----------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def tokens_seen(self) -> list[str]:
        """Distinct bearer tokens requests carried, in order of first use."""
        return list(self._server.tokens_seen) if self._server is not None else []

    @property
    def kubeconfig(self) -> Path:
        if self._kubeconfig is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._kubeconfig

    def start(self) -> KubeEmulator:
        if self._server is not None:
            return self
        self._stopping.clear()
        self.cluster.store.closed = False
        self._bootstrap()
        self._server = ApiServer(
            (HOST, self.port), self.cluster, self.faults, self.kubelet.logs, self.timings.bookmark
        )
        self.port = int(self._server.server_address[1])
        self._server.log_running = self.kubelet.running
        with self.cluster.lock:
            api_service(self.controllers, self.port)
        self._server.require_token = self.token is not None
        if self.tls:
            certificate = make_certificate(self._workdir())
            self.ca_pem = certificate.ca_pem
            self._client_cert = (certificate.client_cert_pem, certificate.client_key_pem)
            # The handshake happens on the connection's own thread (Handler.handle),
            # not in accept(): a client that connects and stays silent must not
            # stall every other one.
            self._server.socket = certificate.context().wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        serve = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="kube-api", daemon=True
        )
        loop = threading.Thread(target=self._loop, name="kube-controllers", daemon=True)
        self._threads = [serve, loop]
        for thread in self._threads:
            thread.start()
        self._write_kubeconfig()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        # The kubeconfig stays (pointing at a closed port) until the process exits,
        # so a client holding it sees an unreachable cluster rather than a missing file.

    def _loop(self) -> None:
        """The controller manager and kubelet, one pass per tick, at a fixed rate.

        Passes start ``tick`` apart, however long the last one took: a real
        kubelet's and controller-manager's timing does not depend on how busy
        the API server is, and a loop that slept a whole tick after each pass
        made every rollout slower the more this process served (watches, lists).
        A pass that overruns its tick is followed by a whole tick's rest, as
        before, so an overloaded emulator never spins.
        """
        tick = self.timings.tick
        due = time.monotonic() + tick
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            due += tick
            try:
                self.kubelet.tick()
                self.controllers.tick()
            except Exception as exc:  # keep serving; tests can read loop_errors
                self.loop_errors.append(exc)
                if len(self.loop_errors) == 1:
                    import traceback

                    traceback.print_exc()
            now = time.monotonic()
            if due <= now:
                due = now + tick

    def _bootstrap(self) -> None:
        """System namespaces and the fake nodes, as a fresh cluster has them."""
        ns = self.cluster.registry.lookup("", "v1", "namespaces")
        node_rt = self.cluster.registry.lookup("", "v1", "nodes")
        assert ns is not None and node_rt is not None
        opts = WriteOptions(manager="kube-apiserver")
        for name in SYSTEM_NAMESPACES:
            if self.cluster.find(ns, "", name) is None:
                self.cluster.create(ns, "", {"metadata": {"name": name}}, opts)
        classes = self.cluster.registry.lookup("storage.k8s.io", "v1", "storageclasses")
        assert classes is not None
        if self.cluster.find(classes, "", DEFAULT_STORAGE_CLASS) is None:
            self.cluster.create(classes, "", _storage_class(), opts)
        for index, name in enumerate(self.kubelet.nodes):
            if self.cluster.find(node_rt, "", name) is None:
                node = self.cluster.create(node_rt, "", _node(name, index), opts)
                node["status"] = _node_status(index)
                self.cluster.write(node_rt, node, subresource="status", manager="kubelet")

    def _workdir(self) -> Path:
        """A private temp dir (kubeconfig, certificates), removed when the process exits."""
        if self._tempdir is None:
            self._tempdir = Path(tempfile.mkdtemp(prefix="gitops-kube-"))
            atexit.register(shutil.rmtree, self._tempdir, ignore_errors=True)
        return self._tempdir

    def _write_kubeconfig(self) -> None:
        if self._kubeconfig is None:
            self._kubeconfig = self._workdir() / "kubeconfig"
        cluster: dict[str, Any] = {"server": self.url}
        if self.ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca_pem.encode()).decode()
        user: dict[str, str] = {}
        if self.token is not None:
            user = {"token": self.token}
        elif self._client_cert is not None:
            cert, key = (base64.b64encode(pem.encode()).decode() for pem in self._client_cert)
            user = {"client-certificate-data": cert, "client-key-data": key}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": CONTEXT, "cluster": cluster}],
            "users": [{"name": CONTEXT, "user": user}],
            "contexts": [
                {
                    "name": CONTEXT,
                    "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"},
                }
            ],
            "current-context": CONTEXT,
            "preferences": {},
        }
        self._kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        partial = self._kubeconfig.with_name(self._kubeconfig.name + ".partial")
        partial.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(partial, self._kubeconfig)

    # -- reading the store (tests) --------------------------------------------------

    def objects(self, kind_plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Stored objects of a resource (``"deployments"``, ``"widgets.example.com"``...).

        ``namespace=None`` means all namespaces. Copies, with kind and apiVersion.
        """
        plural, _, group = kind_plural.partition(".")
        if not group:
            groups = {rt.group for rt in self.cluster.registry.all() if rt.plural == plural}
            group = "" if "" in groups or not groups else sorted(groups)[0]
        with self.cluster.lock:
            return [clone(o) for o in self.cluster.store.items((group, plural), namespace)]

    def compact(self) -> None:
        """Forget the watch history: resuming from any earlier resourceVersion gets 410 Gone."""
        self.cluster.store.compact()

    def wait_for(self, predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
        """Poll ``predicate()`` until it returns something truthy (tests); raise on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)


def _storage_class() -> dict[str, Any]:
    """GKE's default class (here binding at once: the emulator has no volume topology)."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": DEFAULT_STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            "labels": {"addonmanager.kubernetes.io/mode": "EnsureExists"},
        },
        "provisioner": PROVISIONER,
        "parameters": {"type": "pd-balanced"},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def _node(name: str, index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "e2-standard-4",
                "topology.kubernetes.io/region": "sandbox-region1",
                "topology.kubernetes.io/zone": f"sandbox-region1-{'abc'[index % 3]}",
            },
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
    }


def _node_status(index: int) -> dict[str, Any]:
    from steps.sandbox.kube.api import now

    stamp = now()
    return {
        "capacity": {
            "cpu": "4",
            "memory": "16393244Ki",
            "pods": "110",
            "ephemeral-storage": "101203600Ki",
        },
        "allocatable": {
            "cpu": "3920m",
            "memory": "13198876Ki",
            "pods": "110",
            "ephemeral-storage": "47093746742",
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }
        ],
        "addresses": [
            {"type": "InternalIP", "address": f"127.0.0.{101 + index}"},
            {"type": "Hostname", "address": f"node-{index + 1}"},
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.32.0-gitops-sandbox",
            "containerRuntimeVersion": "containerd://1.7.20",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": "Container-Optimized OS",
            "kernelVersion": "6.1.0",
            "machineID": f"{index:032x}",
            "systemUUID": f"00000000-0000-0000-0000-{index:012x}",
            "bootID": f"00000000-0000-0000-0001-{index:012x}",
            "kubeProxyVersion": "v1.32.0",
        },
    }


# -- gitops-sandbox kube --------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the emulator in the foreground; the kubeconfig appears once it serves."""
    parser = argparse.ArgumentParser(
        prog="gitops-sandbox kube",
        description="Run a Kubernetes API emulator (controllers, fake kubelet) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    parser.add_argument("--kubeconfig", metavar="PATH", help="write the kubeconfig here")
    parser.add_argument(
        "--registry", metavar="HOST:PORT", help="ask this registry whether images exist"
    )
    parser.add_argument("--nodes", type=int, default=3, help="fake nodes (default 3)")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a throwaway CA")
    parser.add_argument(
        "--token", help="answer 401 to requests without a bearer token; the kubeconfig has this one"
    )
    parser.add_argument(
        "--timing",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="override a timing: pull, start, ready, backoff, tick, observe_lag, ...",
    )
    parser.add_argument("--fast", action="store_true", help="the fast timings tests use")
    parser.add_argument(
        "--fail",
        action="append",
        default=[],
        metavar="PATTERN[:STATUS[:COUNT]]",
        help="answer requests matching PATTERN with STATUS (default 500) COUNT times (default 1)",
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="add this many seconds to every request"
    )
    args = parser.parse_args(argv)
    timings = Timings.fast() if args.fast else Timings()
    changes: dict[str, float] = {}
    for item in args.timing:
        name, _, value = item.partition("=")
        if name not in Timings.__dataclass_fields__:
            parser.error(f"unknown timing {name!r}")
        try:
            changes[name] = float(value)
        except ValueError:
            parser.error(f"--timing {item}: not a number")
    emulator = KubeEmulator(
        port=args.port,
        registry=args.registry,
        timings=timings.but(**changes),
        nodes=args.nodes,
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        tls=args.tls,
        token=args.token,
    )
    for spec in args.fail:
        pattern, _, rest = spec.partition(":")
        status, _, count = rest.partition(":")
        emulator.faults.fail(pattern, int(status or 500), int(count or 1))
    if args.latency:
        emulator.faults.latency(args.latency)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        emulator.start()
    except OSError as exc:
        print(
            f"gitops-sandbox kube: error: cannot serve on {HOST}:{args.port}: {exc}",
            file=sys.stderr,
        )
        return 3
    print(
        f"gitops-sandbox kube: serving {emulator.url}, kubeconfig {emulator.kubeconfig}",
        file=sys.stderr,
        flush=True,
    )
    print(emulator.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0
