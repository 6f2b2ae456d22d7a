"""The rollout rules, table-driven from real-shaped status objects in rollout_cases/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from steps.lib import fail_fast
from steps.lib import rollout_rules as rules
from steps.lib.timefmt import parse_rfc3339

CASES = Path(__file__).parent / "rollout_cases"
T0 = parse_rfc3339("2026-11-26T06:00:00Z") or 0.0


def load(name: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((CASES / name).read_text())
    assert isinstance(cases, list) and cases
    return cases


STATUS_CASES = [
    pytest.param(case, id=f"{file}: {case['name']}")
    for file in ("deployments.yaml", "statefulsets.yaml", "daemonsets.yaml", "other-kinds.yaml")
    for case in load(file)
]
POD_CASES = [pytest.param(case, id=case["name"]) for case in load("pods.yaml")]


@pytest.mark.parametrize("case", STATUS_CASES)
def test_status(case: dict[str, Any]) -> None:
    verdict = rules.status_of(
        case["object"],
        applied_generation=case.get("applied_generation"),
        wait_load_balancer=bool(case.get("wait_load_balancer")),
    )
    expect = case["expect"]
    assert verdict.status == expect["status"], verdict
    assert verdict.reason == expect["reason"], verdict
    if "message" in expect:
        assert verdict.message == expect["message"]


def describe(problem: fail_fast.Problem) -> str:
    where = problem.pod if problem.container is None else f"{problem.pod}/{problem.container}"
    return f"{where}: {problem.reason}"


@pytest.mark.parametrize("case", POD_CASES)
def test_new_revision_pods_and_their_problems(case: dict[str, Any]) -> None:
    workload = case["workload"]
    pods = rules.new_revision_pods(workload, case.get("pods", []), case.get("replicasets", []))
    assert [p["metadata"]["name"] for p in pods] == case["expect_new_pods"]

    problems = [problem for pod in pods for problem in fail_fast.pod_problems(pod)]
    now = parse_rfc3339(case["now"]) if "now" in case else T0 + case.get("elapsed", 0)
    assert now is not None
    first_seen = T0 if "now" not in case else now
    graces = fail_fast.Graces(persisting=30, unschedulable=120)
    fatal = [describe(p) for p in problems if fail_fast.is_fatal(p, first_seen, now, graces)]
    pending = [describe(p) for p in problems if not fail_fast.is_fatal(p, first_seen, now, graces)]
    assert fatal == case["expect_fatal"]
    assert pending == case.get("expect_pending", [])


def test_every_rule_is_in_the_table_once() -> None:
    assert len(set(rules.RULES.values())) == len(rules.RULES)
    assert set(rules.RULES) >= rules.WORKLOADS


def test_problem_clock_forgets_what_went_away() -> None:
    transient = fail_fast.Problem("p", "c", "ErrImagePull", "timeout", persisting=True)
    clock = fail_fast.ProblemClock()
    graces = fail_fast.Graces(persisting=10)
    assert clock.fatal([transient], now=100.0, graces=graces) == []
    # It went away (the pull succeeded on retry) and came back: the clock restarts.
    assert clock.fatal([], now=105.0, graces=graces) == []
    assert clock.fatal([transient], now=112.0, graces=graces) == []
    assert clock.fatal([transient], now=122.0, graces=graces) == [transient]


def test_failed_create_counts_only_for_the_given_owners() -> None:
    events = [
        {
            "reason": "FailedCreate",
            "type": "Warning",
            "message": 'pods "web-1" is forbidden: exceeded quota',
            "involvedObject": {"kind": "ReplicaSet", "name": "web-1", "uid": "rs-new"},
        },
        {
            "reason": "FailedCreate",
            "type": "Warning",
            "message": "old trouble",
            "involvedObject": {"kind": "ReplicaSet", "name": "web-0", "uid": "rs-old"},
        },
    ]
    problems = fail_fast.failed_create_problems(events, ["rs-new"])
    assert [(p.pod, p.reason, p.persisting) for p in problems] == [
        ("ReplicaSet/web-1", "FailedCreate", True)
    ]
