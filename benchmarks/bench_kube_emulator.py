"""Benchmark: how fast the Kubernetes API emulator reacts, and what a tick costs.

Prints, with ratios to baselines measured in the same process (machines here
are noisy, so only ratios mean much):

- watch delivery: from a PATCH returning to a watcher holding the event,
  against a plain GET round trip (the floor of any HTTP exchange);
- rollout: a Deployment of N replicas from create to rolled out, against the
  sum of the configured per-pod timings (pull + start + ready), the floor the
  kubelet could reach;
- tick cost: one full kubelet + controller pass over D deployments, against
  the configured tick period (it must stay under 1, or time stretches; idle
  passes are skipped, so this is the cost while things change).

Run: .venv/bin/python benchmarks/bench_kube_emulator.py [--replicas N] [--deployments D]
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import statistics
import threading
import time
from typing import Any

import urllib3
from kubernetes import client, config, watch

from steps.sandbox.kube import KubeEmulator, Timings


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]},
            },
        },
    }


def watch_latency(kube: KubeEmulator, rounds: int) -> tuple[float, float]:
    """(median PATCH-sent-to-event-received, median GET round trip), in seconds."""
    api = config.new_client_from_config(str(kube.kubeconfig))
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "bench"}, "data": {"n": "0"}}
    )
    received: queue.Queue[float] = queue.Queue()
    w = watch.Watch()

    def listen() -> None:
        with contextlib.suppress(urllib3.exceptions.HTTPError):  # cut when we stop
            for event in w.stream(
                core.list_namespaced_config_map, "default", field_selector="metadata.name=bench"
            ):
                if event["type"] == "MODIFIED":
                    received.put(time.perf_counter())

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    time.sleep(0.2)
    deliveries, round_trips = [], []
    for n in range(1, rounds + 1):
        started = time.perf_counter()
        core.read_namespaced_config_map("bench", "default")
        round_trips.append(time.perf_counter() - started)
        sent = time.perf_counter()
        core.patch_namespaced_config_map("bench", "default", {"data": {"n": str(n)}})
        deliveries.append(received.get(timeout=5) - sent)
    w.stop()
    return statistics.median(deliveries), statistics.median(round_trips)


def rollout_time(kube: KubeEmulator, replicas: int) -> float:
    apps = client.AppsV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    started = time.perf_counter()
    apps.create_namespaced_deployment("default", deployment("roll", replicas))

    def done() -> bool:
        found = [
            d for d in kube.objects("deployments", "default") if d["metadata"]["name"] == "roll"
        ]
        status = found[0].get("status", {}) if found else {}
        return bool(status.get("availableReplicas") == replicas == status.get("updatedReplicas"))

    kube.wait_for(done, timeout=60, interval=0.002)
    return time.perf_counter() - started


def tick_cost(kube: KubeEmulator, deployments: int, replicas: int) -> float:
    apps = client.AppsV1Api(config.new_client_from_config(str(kube.kubeconfig)))
    for i in range(deployments):
        apps.create_namespaced_deployment("default", deployment(f"load-{i}", replicas))
    kube.wait_for(
        lambda: len(kube.objects("pods", "default")) >= deployments * replicas, timeout=60
    )
    time.sleep(1.0)  # let everything settle
    costs = []
    for _ in range(20):
        started = time.perf_counter()
        kube.kubelet.tick()
        kube.controllers.tick(force=True)
        costs.append(time.perf_counter() - started)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--deployments", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    timings = Timings.fast()
    with KubeEmulator(timings=timings) as kube:
        delivery, round_trip = watch_latency(kube, args.rounds)
        print(
            f"watch delivery  {delivery * 1000:7.2f} ms   "
            f"GET round trip {round_trip * 1000:6.2f} ms   ratio {delivery / round_trip:5.1f}x"
        )
    with KubeEmulator(timings=timings) as kube:
        took = rollout_time(kube, args.replicas)
        floor = timings.pull + timings.start + timings.ready
        print(
            f"rollout of {args.replicas:3d}  {took * 1000:7.1f} ms   "
            f"per-pod floor {floor * 1000:6.1f} ms   ratio {took / floor:5.1f}x"
        )
    with KubeEmulator(timings=timings) as kube:
        cost = tick_cost(kube, args.deployments, 3)
        print(
            f"tick ({args.deployments} deployments x 3 pods)  {cost * 1000:7.2f} ms   "
            f"tick period {timings.tick * 1000:5.1f} ms   ratio {cost / timings.tick:5.2f}x"
        )


if __name__ == "__main__":
    main()
