"""gitops-verify-rollout against the real kubectl, whole processes, on one emulator.

Two measurements, each in alternating pairs (ours first in even pairs, kubectl
first in odd ones) so that drift in machine load hits both sides alike:

1. Healthy rollout: a ConfigMap, a Service and a 4-replica Deployment with a
   new image each time. Ours: ``gitops-verify-rollout --manifests DIR``
   (server-side dry run, ordered apply, watch), from a plain install of this
   checkout as in the image (``plain_install``; ``--ours dev`` runs the dev
   ``.venv``'s editable install instead). kubectl:
   ``kubectl apply --server-side --force-conflicts -f DIR`` then ``kubectl rollout status
   deployment/web``, the two sharing one discovery cache that starts empty each
   run, as in a fresh Cloud Build step (``--kubectl-cache warm`` keeps one
   across runs instead), and ``--validate=false`` (no field validation at all,
   where ours asks the server for Strict: it only makes kubectl faster). Same
   kubeconfig, same manifests but for the image. Printed: which kubectl, each
   side's median wall time and the median of the per-pair ratios.

   Which kubectl: ``/usr/bin/kubectl`` here is the Google Cloud CLI's
   dispatcher, which asks the server its version and runs the matching
   ``kubectl.1.NN`` beside it (itself when it matches). By default the
   benchmark runs that versioned binary directly, as a user with a plain
   kubectl does: one round trip fewer than through the dispatcher, so the
   stricter baseline. ``--kubectl PATH`` (or ``$KUBECTL``) picks another.
2. Failing rollout: the new revision's container crashes. Measured from the
   first container crash the emulator stores (its own change log) to the
   process's exit. Ours exits 1 on CrashLoopBackOff; kubectl rollout status
   waits for the Deployment's progressDeadlineSeconds (``--progress-deadline``,
   default 600 s as in Kubernetes; the kubectl side is skipped when it would
   take longer than ``--max-kubectl-wait``).

Emulator timings: the emulator's defaults, or ``--timing NAME=SECONDS``
overrides (``--real-backoff`` = ``backoff=10 backoff_cap=300``, the kubelet's
real crash back-off), or ``--emulator-mode NAME`` when the emulator offers
named timing modes (``Timings.<NAME>()``).

    .venv/bin/python benchmarks/bench_vs_kubectl.py [--pairs 6] [--crash-pairs 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml
from plain_install import plain_install

from steps.sandbox.kube import KubeEmulator, Timings
from steps.sandbox.kube.resources import VERSION_INFO

REPO = Path(__file__).resolve().parent.parent
DISPATCHER = Path("/usr/bin/kubectl")
BEHAVIOR = "sandbox.gitops-steps.dev/behavior"


def find_kubectl(server_minor: str) -> Path:
    """The real kubectl the dispatcher would run against this server, called directly."""
    if os.environ.get("KUBECTL"):
        return Path(os.environ["KUBECTL"])
    versioned = DISPATCHER.resolve().with_name(f"kubectl.1.{server_minor}")
    return versioned if versioned.exists() else DISPATCHER


def kubectl_version(kubectl: Path) -> str:
    proc = subprocess.run(
        [str(kubectl), "version", "--client"], capture_output=True, text=True, check=False
    )
    return proc.stdout.splitlines()[0] if proc.returncode == 0 and proc.stdout else "unknown"


def ours_command(bin_dir: Path | None = None) -> list[str]:
    """gitops-verify-rollout from ``bin_dir`` (a plain install), else this environment."""
    found = (bin_dir or Path(sys.executable).parent) / "gitops-verify-rollout"
    return [str(found)] if found.exists() else [sys.executable, "-m", "steps.verify_rollout"]


def manifests(image: str, *, behavior: str, progress_deadline: int) -> list[dict[str, Any]]:
    """The app; ``behavior`` always set, so that each side's apply takes it over from the other
    (server-side apply keeps a field another manager set when the new manifest leaves it out).
    """
    template_meta: dict[str, Any] = {"labels": {"app": "web"}, "annotations": {BEHAVIOR: behavior}}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "web-config"},
            "data": {"image": image},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 4,
                "progressDeadlineSeconds": progress_deadline,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": template_meta,
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        },
    ]


def write_dir(directory: Path, objects: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return directory


class CrashClock:
    """When the emulator's store first records a terminated, restarted container.

    Wraps the store's event log on this instance: the time is taken inside
    the commit, before any watcher can have seen it.
    """

    def __init__(self, kube: KubeEmulator) -> None:
        self.store = kube.cluster.store
        self._original = self.store._log_event
        self.image: str | None = None
        self.hit: float | None = None
        self._lock = threading.Lock()

        def logged(kind: str, resource: tuple[str, str], obj: dict[str, Any], old: Any) -> None:
            self._original(kind, resource, obj, old)
            if self.image is not None and self.hit is None and resource == ("", "pods"):
                for status in (obj.get("status") or {}).get("containerStatuses") or []:
                    if status.get("image") == self.image and (
                        status.get("restartCount", 0) > 0
                        or (status.get("lastState") or {}).get("terminated")
                        or (status.get("state") or {}).get("terminated")
                    ):
                        self.hit = time.monotonic()
                        return

        self.store._log_event = logged  # type: ignore[method-assign]

    def arm(self, image: str) -> None:
        with self.store.lock:
            self.image, self.hit = image, None

    def stop(self) -> None:
        self.store._log_event = self._original  # type: ignore[method-assign]


def run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, float, str]:
    started = time.monotonic()
    # stdin closed: a kubectl that wants to prompt (an HTTPS kubeconfig whose user has no
    # credentials asks for a username) fails at once instead of waiting on a terminal.
    proc = subprocess.run(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, time.monotonic() - started, proc.stderr[-2000:]


class Sides:
    def __init__(
        self,
        kube: KubeEmulator,
        work: Path,
        warm_cache: bool,
        kubectl: Path | None = None,
        ours_bin: Path | None = None,
    ) -> None:
        self.kube = kube
        self.ours_command = ours_command(ours_bin)
        self.kubectl_path = kubectl or find_kubectl(VERSION_INFO["minor"])
        self.work = work
        self.warm_cache = warm_cache
        # Bytecode caching on, as in an installed image (.pyc files written at install).
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GITOPS_", "PYTHONDONTWRITEBYTECODE"))
        }
        self.env["KUBECONFIG"] = str(kube.kubeconfig)
        self.count = 0

    def ours(self, directory: Path, timeout: float) -> tuple[int, float, float]:
        argv = [*self.ours_command, "--manifests", str(directory), "--timeout", f"{timeout:g}s"]
        argv += ["--kubeconfig", str(self.kube.kubeconfig)]
        code, seconds, err = run(argv, self.env, timeout + 30)
        if code not in (0, 1):
            raise SystemExit(f"gitops-verify-rollout exit {code}:\n{err}")
        return code, seconds, time.monotonic()

    def kubectl(self, directory: Path, timeout: float) -> tuple[int, float, float]:
        self.count += 1
        cache = self.work / ("kubectl-cache" if self.warm_cache else f"kubectl-cache-{self.count}")
        base = [str(self.kubectl_path), "--kubeconfig", str(self.kube.kubeconfig)]
        base += ["--cache-dir", str(cache)]
        started = time.monotonic()
        apply = ["apply", "--server-side", "--force-conflicts", "--validate=false"]
        code, _, err = run([*base, *apply, "-f", str(directory)], self.env, 60)
        if code != 0:
            raise SystemExit(f"kubectl apply exit {code}:\n{err}")
        code, _, err = run(
            [*base, "rollout", "status", "deployment/web", f"--timeout={timeout:g}s"],
            self.env,
            timeout + 30,
        )
        return code, time.monotonic() - started, time.monotonic()


def healthy(
    sides: Sides, pairs: int, deadline: int, cpu: dict[str, list[float]]
) -> list[tuple[float, float]]:
    """Per pair, wall seconds (ours, kubectl); CPU seconds of each process go to ``cpu``."""
    results = []
    for pair in range(pairs):
        order: list[tuple[str, Callable[[Path, float], tuple[int, float, float]]]] = [
            ("ours", sides.ours),
            ("kubectl", sides.kubectl),
        ]
        if pair % 2:
            order.reverse()
        seconds: dict[str, float] = {}
        for name, side in order:
            image = f"example.com/web:{name}-{pair}"
            directory = write_dir(
                sides.work / f"h-{name}-{pair}",
                manifests(image, behavior="healthy", progress_deadline=deadline),
            )
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            code, took, _ = side(directory, 120)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if code != 0:
                raise SystemExit(f"{name}: healthy rollout exit {code}")
            seconds[name] = took
        results.append((seconds["ours"], seconds["kubectl"]))
        print(
            f"  healthy pair {pair}: ours {seconds['ours']:.3f}s  kubectl "
            f"{seconds['kubectl']:.3f}s  ratio {seconds['ours'] / seconds['kubectl']:.2f}",
            file=sys.stderr,
        )
    return results


def failing(
    sides: Sides, clock: CrashClock, pairs: int, deadline: int, max_wait: float
) -> list[tuple[float, float | None]]:
    results: list[tuple[float, float | None]] = []
    for pair in range(pairs):
        measured: dict[str, float | None] = {}
        names = ["ours", "kubectl"] if pair % 2 == 0 else ["kubectl", "ours"]
        for name in names:
            if name == "kubectl" and deadline > max_wait:
                measured[name] = None
                continue
            # Back to a healthy revision first, so that each crash is a new rollout.
            good = write_dir(
                sides.work / f"g-{name}-{pair}",
                manifests(f"example.com/web:good-{name}-{pair}", behavior="healthy",
                          progress_deadline=deadline),
            )  # fmt: skip
            code, _, _ = sides.ours(good, 120)
            if code != 0:
                raise SystemExit("could not restore a healthy revision")
            image = f"example.com/web:crash-{name}-{pair}"
            bad = write_dir(
                sides.work / f"c-{name}-{pair}",
                manifests(image, behavior="crash", progress_deadline=deadline),
            )
            clock.arm(image)
            side = sides.ours if name == "ours" else sides.kubectl
            code, took, exited = side(bad, deadline + 120)
            if code == 0:
                raise SystemExit(f"{name}: a crashing rollout exited 0")
            if clock.hit is None:
                raise SystemExit(f"{name}: exited {code} before any container crashed")
            measured[name] = exited - clock.hit
            print(
                f"  failing {name} {pair}: exit {code} {took:.2f}s after start, "
                f"{exited - clock.hit:.2f}s after the first crash",
                file=sys.stderr,
            )
        ours = measured["ours"]
        assert ours is not None
        results.append((ours, measured["kubectl"]))
    return results


def timings_from(args: argparse.Namespace) -> Timings:
    timings = Timings()
    if args.emulator_mode:
        make = getattr(Timings, args.emulator_mode, None)
        if not callable(make):
            raise SystemExit(f"--emulator-mode {args.emulator_mode}: the emulator has no such mode")
        timings = make()
    changes: dict[str, float] = {}
    if args.real_backoff:
        changes.update(backoff=10.0, backoff_cap=300.0)
    for item in args.timing:
        name, _, value = item.partition("=")
        changes[name] = float(value)
    return timings.but(**changes) if changes else timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="healthy rollout pairs")
    parser.add_argument("--crash-pairs", type=int, default=1, help="failing rollout pairs")
    parser.add_argument("--progress-deadline", type=int, default=600)
    parser.add_argument(
        "--max-kubectl-wait",
        type=float,
        default=900,
        help="skip kubectl's failing side when its deadline is longer (seconds)",
    )
    parser.add_argument("--kubectl-cache", choices=("cold", "warm"), default="cold")
    parser.add_argument(
        "--kubectl",
        type=Path,
        help="the kubectl to measure (default: $KUBECTL, else the versioned kubectl the "
        f"dispatcher at {DISPATCHER} would run, called directly)",
    )
    parser.add_argument("--tls", action="store_true", help="the emulator serves HTTPS")
    parser.add_argument("--emulator-mode", metavar="NAME", help="Timings.NAME() of the emulator")
    parser.add_argument("--real-backoff", action="store_true", help="crash back-off 10s doubling")
    parser.add_argument("--timing", action="append", default=[], metavar="NAME=SECONDS")
    parser.add_argument(
        "--ours",
        choices=("plain", "dev"),
        default="plain",
        help="measure a plain install of this checkout, as in the image (default), or the "
        "dev .venv's editable one (its import hook runs on every import)",
    )
    args = parser.parse_args(argv)
    kubectl = args.kubectl or find_kubectl(VERSION_INFO["minor"])
    if not kubectl.exists():
        raise SystemExit(f"{kubectl}: not found (--kubectl PATH)")

    timings = timings_from(args)
    with ExitStack() as stack:
        ours_bin = stack.enter_context(plain_install("verify")) if args.ours == "plain" else None
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        kube = stack.enter_context(KubeEmulator(timings=timings, tls=args.tls))
        work = Path(tmp)
        sides = Sides(kube, work, args.kubectl_cache == "warm", kubectl, ours_bin)
        ours_label = " ".join(sides.ours_command)
        # Warm up both sides once (page cache, the first ReplicaSet), unmeasured.
        warm = write_dir(
            work / "warm",
            manifests(
                "example.com/web:warm", behavior="healthy", progress_deadline=args.progress_deadline
            ),
        )
        sides.ours(warm, 120)
        sides.kubectl(warm, 120)
        cpu: dict[str, list[float]] = {"ours": [], "kubectl": []}
        pairs = healthy(sides, args.pairs, args.progress_deadline, cpu)
        clock = CrashClock(kube)
        try:
            crashes = failing(
                sides, clock, args.crash_pairs, args.progress_deadline, args.max_kubectl_wait
            )
        finally:
            clock.stop()

    print(f"ours: {ours_label} ({args.ours} install)")
    print(f"kubectl: {kubectl} ({kubectl_version(kubectl)}), discovery cache {args.kubectl_cache}")
    print(f"emulator timings: {timings}; load average {os.getloadavg()[0]:.1f}")
    if pairs:
        ours = [o for o, _ in pairs]
        theirs = [k for _, k in pairs]
        ratios = [o / k for o, k in pairs]
        print(
            f"healthy rollout, {len(pairs)} pairs: gitops-verify-rollout median "
            f"{statistics.median(ours):.3f}s, kubectl apply --server-side + rollout status median "
            f"{statistics.median(theirs):.3f}s"
        )
        print(f"healthy rollout: median ratio ours/kubectl {statistics.median(ratios):.3f} "
              "(target <= 1.0)")  # fmt: skip
        print(
            f"healthy rollout CPU (user+system): ours median {statistics.median(cpu['ours']):.3f}s,"
            f" kubectl (both processes) {statistics.median(cpu['kubectl']):.3f}s"
        )
    if crashes:
        ours_crash = statistics.median(o for o, _ in crashes)
        kubectl_crash = [k for _, k in crashes if k is not None]
        print(f"failing rollout: first crash -> gitops-verify-rollout exit 1: median "
              f"{ours_crash:.2f}s")  # fmt: skip
        if kubectl_crash:
            median = statistics.median(kubectl_crash)
            print(
                f"failing rollout: first crash -> kubectl rollout status exit: median "
                f"{median:.2f}s (progressDeadlineSeconds {args.progress_deadline}); "
                f"ratio {ours_crash / median:.2e} (kubectl {median / ours_crash:.0f}x longer)"
            )
        else:
            print(
                f"failing rollout: kubectl side skipped: it waits for progressDeadlineSeconds "
                f"({args.progress_deadline}s after the last progress); ratio to that "
                f"deadline {ours_crash / args.progress_deadline:.2e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
