"""How long the simulated cluster takes to do things (seconds).

The default is a real kubelet's back-off (crash and image pull: 10 s, doubling
to 5 min) with everything else short, so a healthy rollout takes well under a
second while a failing one is seen no sooner than on a real cluster.
``fast()`` compresses everything, back-off included, for tests that make no
claim about timing; it must be asked for explicitly. Every delay the stage
could observe is here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Timings:
    pull: float = 0.1  # pulling an image
    start: float = 0.1  # creating and starting a container after the pull
    ready: float = 0.15  # from start to Ready (as if a readiness probe passed)
    backoff: float = 10.0  # first crash / image pull back-off, as the kubelet's; doubles
    backoff_cap: float = 300.0  # the longest back-off (the kubelet's 5 minutes)
    tick: float = 0.03  # controller and kubelet loop period
    crash_after: float = 0.15  # how long a crashing container runs before it exits
    slow_start: float = 1.0  # from start to Ready for behavior slow-start
    terminate: float = 0.1  # graceful termination of a pod being deleted
    job_run: float = 0.2  # how long a Job's container runs before it exits 0
    load_balancer: float = 0.3  # until a LoadBalancer Service gets its ingress IP
    pvc_bind: float = 0.05  # until a PersistentVolumeClaim is Bound
    crd_establish: float = 0.05  # until a CRD is Established
    observe_lag: float = 0.0  # until workload controllers observe a new generation
    bookmark: float = 1.0  # between watch BOOKMARK events
    scheduling_retry: float = 1.0  # between FailedScheduling attempts

    @classmethod
    def fast(cls) -> Timings:
        """Timings for tests: every step in tens of milliseconds."""
        return cls(
            pull=0.02,
            start=0.02,
            ready=0.03,
            backoff=0.1,
            backoff_cap=0.5,
            tick=0.01,
            crash_after=0.05,
            slow_start=0.4,
            terminate=0.03,
            job_run=0.05,
            load_balancer=0.1,
            pvc_bind=0.02,
            crd_establish=0.02,
            bookmark=0.2,
            scheduling_retry=0.3,
        )

    def but(self, **changes: float) -> Timings:
        """A copy with some timings changed."""
        return replace(self, **changes)
