"""How fast verify-rollout reacts: to a finished rollout, and to a crash loop.

Against the Kubernetes API emulator, in one process, with a real kubelet's
back-off by default (``--timings real``: a crash loop backs off 10 s, doubling
to 5 min, as on a cluster); ``--timings fast`` compresses every delay, as the
tests do, and says nothing about how soon a real cluster would fail.

1. Reaction latency: from the moment the emulator stores a Deployment status
   that completes the rollout to the moment the stage returns exit 0. The
   baseline is a poller (GET every --poll-interval seconds, the same rules)
   run in the same process; a 5-second poller averages 2.5 s.
2. Crash loop: from the first new pod in ``CrashLoopBackOff`` in the store to
   the stage returning exit 1 (a 10-minute progress deadline would take 600 s).

Store times come from the emulator's own change log (a thread waiting on its
condition variable), so they are the times the API server committed the
change, not the times anyone observed it.

    .venv/bin/python benchmarks/bench_verify_rollout.py [--runs 15]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from steps import verify_rollout
from steps.lib import rollout_rules as rules
from steps.lib.kube_access import Access, connect
from steps.sandbox.kube import KubeEmulator, Timings

BEHAVIOR = "sandbox.gitops-steps.dev/behavior"


def deployment(image: str, behavior: str | None = None, replicas: int = 3) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {"app": "web"}}
    if behavior:
        metadata["annotations"] = {BEHAVIOR: behavior}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": metadata,
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


class StoreClock:
    """Records when the emulator's store commits the first object matching a predicate.

    It wraps the store's event log on this instance only: the time is taken
    inside the commit, before any watcher can have seen the change.
    """

    def __init__(self, kube: KubeEmulator) -> None:
        self.store = kube.cluster.store
        self._original = self.store._log_event
        self._predicate: Callable[[tuple[str, str], dict[str, Any]], bool] | None = None
        self.hit: float | None = None

        def logged(kind: str, resource: tuple[str, str], obj: dict[str, Any], old: Any) -> None:
            self._original(kind, resource, obj, old)
            predicate = self._predicate
            if predicate is not None and self.hit is None and predicate(resource, obj):
                self.hit = time.monotonic()

        self.store._log_event = logged  # type: ignore[method-assign]

    def arm(self, predicate: Callable[[tuple[str, str], dict[str, Any]], bool]) -> None:
        with self.store.lock:
            self._predicate = predicate
            self.hit = None

    def stop(self) -> None:
        self.store._log_event = self._original  # type: ignore[method-assign]


def completes(generation: int) -> Callable[[tuple[str, str], dict[str, Any]], bool]:
    def check(resource: tuple[str, str], obj: dict[str, Any]) -> bool:
        if resource != ("apps", "deployments") or obj["metadata"].get("name") != "web":
            return False
        typed = {"apiVersion": "apps/v1", "kind": "Deployment", **obj}
        return bool(
            obj["metadata"].get("generation", 0) >= generation
            and rules.status_of(typed, applied_generation=generation).done
        )

    return check


def crash_looping(resource: tuple[str, str], obj: dict[str, Any]) -> bool:
    if resource != ("", "pods"):
        return False
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    return any(
        ((s.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
        for s in statuses
    )


def run_stage(kube: KubeEmulator, manifests: Path) -> tuple[int, float]:
    argv = ["--manifests", str(manifests), "--kubeconfig", str(kube.kubeconfig), "--timeout", "60s"]
    with contextlib.redirect_stderr(io.StringIO()):
        code = verify_rollout.main(argv)
    return code, time.monotonic()


def write(directory: Path, obj: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "web.yaml").write_text(yaml.safe_dump(obj))
    return directory


def current_generation(kube: KubeEmulator) -> int:
    found = [d for d in kube.objects("deployments", "default") if d["metadata"]["name"] == "web"]
    return int(found[0]["metadata"]["generation"]) if found else 0


def stage_latencies(kube: KubeEmulator, clock: StoreClock, work: Path, runs: int) -> list[float]:
    latencies = []
    for run in range(runs):
        generation = current_generation(kube) + 1
        clock.arm(completes(generation))
        code, exited = run_stage(
            kube, write(work / f"s{run}", deployment(f"example.com/web:s{run}"))
        )
        assert code == 0, f"run {run}: exit {code}"
        assert clock.hit is not None
        latencies.append(exited - clock.hit)
    return latencies


def poller_latencies(
    kube: KubeEmulator, clock: StoreClock, runs: int, interval: float
) -> list[float]:
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    resource = api.resource("apps/v1", "Deployment")
    assert resource is not None
    latencies = []
    for run in range(runs):
        generation = current_generation(kube) + 1
        clock.arm(completes(generation))
        applied = api.apply(resource, deployment(f"example.com/web:p{run}"))
        target = int(applied["metadata"]["generation"])
        while True:
            time.sleep(interval)
            live = api.request("GET", resource.path("default", "web"))
            if rules.status_of(live, applied_generation=target).done:
                break
        assert clock.hit is not None
        latencies.append(time.monotonic() - clock.hit)
    return latencies


def crash_latencies(kube: KubeEmulator, clock: StoreClock, work: Path, runs: int) -> list[float]:
    latencies = []
    for run in range(runs):
        # Back to a healthy revision first, so each crash loop is a new rollout.
        code, _ = run_stage(kube, write(work / f"h{run}", deployment(f"example.com/web:h{run}")))
        assert code == 0
        clock.arm(lambda resource, obj: crash_looping(resource, obj))
        bad = deployment(f"example.com/web:c{run}", behavior="crash")
        started = time.monotonic()
        code, exited = run_stage(kube, write(work / f"c{run}", bad))
        assert code == 1, f"run {run}: exit {code}"
        assert clock.hit is not None
        latencies.append(exited - clock.hit)
        print(f"  crash run {run}: failed {exited - started:.2f}s after apply", file=sys.stderr)
    return latencies


def describe(name: str, values: Sequence[float]) -> str:
    ordered = sorted(values)
    p50 = statistics.median(ordered)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return (
        f"{name:<34} n={len(ordered):<3} p50 {p50 * 1000:7.1f} ms  "
        f"p90 {p90 * 1000:7.1f} ms  max {ordered[-1] * 1000:7.1f} ms"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rollouts per measurement")
    parser.add_argument("--poll-runs", type=int, default=5)
    parser.add_argument("--poll-interval", type=float, default=1.0, help="baseline poller period")
    parser.add_argument("--crash-runs", type=int, default=5)
    parser.add_argument(
        "--timings",
        choices=("real", "fast"),
        default="real",
        help="the emulator's kubelet timings: real back-off (default) or the tests' fast ones",
    )
    args = parser.parse_args(argv)
    timings = Timings() if args.timings == "real" else Timings.fast()

    with tempfile.TemporaryDirectory() as tmp, KubeEmulator(timings=timings) as kube:
        work = Path(tmp)
        clock = StoreClock(kube)
        try:
            # Warm up: first connection, discovery, imports.
            run_stage(kube, write(work / "warm", deployment("example.com/web:warm")))
            ours = stage_latencies(kube, clock, work, args.runs)
            polled = poller_latencies(kube, clock, args.poll_runs, args.poll_interval)
            crashes = crash_latencies(kube, clock, work, args.crash_runs)
        finally:
            clock.stop()

    print(
        f"verify-rollout reaction times against the emulator ({args.timings} timings: "
        f"back-off {timings.backoff:g}s doubling to {timings.backoff_cap:g}s)"
    )
    print(describe("rollout complete -> stage exit", ours))
    print(describe(f"same, {args.poll_interval:g}s poller baseline", polled))
    p50 = statistics.median(ours)
    print(
        f"p50 ratio to the {args.poll_interval:g}s poller: "
        f"{p50 / statistics.median(polled):.3f}; "
        f"to a 5s poller's 2.5s mean: {p50 / 2.5:.3f} (target p50 < 0.5 s)"
    )
    print(describe("crash loop appears -> stage exit 1", crashes))
    print(
        f"p50 ratio to a 10-minute progress deadline: {statistics.median(crashes) / 600:.5f} "
        "(target < 2 s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
