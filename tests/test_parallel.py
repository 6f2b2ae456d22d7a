"""run_all: every item once, results in input order, exceptions handed back, bounded."""

from __future__ import annotations

import threading
import time

from steps.lib.parallel import run_all


def test_results_in_order_with_exceptions_in_place() -> None:
    def call(n: int) -> int:
        time.sleep(0.01 * (5 - n))  # later items finish first
        if n == 2:
            raise ValueError("two")
        return n * 10

    results = run_all(call, [0, 1, 2, 3, 4])
    assert results[:2] == [0, 10] and results[3:] == [30, 40]
    assert isinstance(results[2], ValueError) and str(results[2]) == "two"


def test_at_most_limit_at_once_and_each_item_once() -> None:
    running = 0
    peak = 0
    seen: list[int] = []
    lock = threading.Lock()

    def call(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            seen.append(n)
        time.sleep(0.005)
        with lock:
            running -= 1
        return n

    assert run_all(call, list(range(20)), limit=3) == list(range(20))
    assert peak == 3
    assert sorted(seen) == list(range(20))
    assert run_all(call, []) == []
    assert run_all(call, [7]) == [7]


def test_the_caller_is_one_of_the_workers() -> None:
    """One thread fewer to start: the calling thread takes items too, within the limit."""
    threads: set[threading.Thread] = set()
    lock = threading.Lock()

    def call(n: int) -> int:
        with lock:
            threads.add(threading.current_thread())
        time.sleep(0.005)
        return n

    assert run_all(call, list(range(6)), limit=3) == list(range(6))
    assert threading.current_thread() in threads and len(threads) <= 3


def test_an_interrupt_in_the_caller_stops_it_at_once() -> None:
    """Ctrl-C or SIGTERM (raised as KeyboardInterrupt) is not held back as a result."""
    caller = threading.current_thread()

    def call(n: int) -> int:
        if threading.current_thread() is caller:
            raise KeyboardInterrupt
        time.sleep(0.05)
        return n

    try:
        run_all(call, [0, 1, 2])
    except KeyboardInterrupt:
        return
    raise AssertionError("the interrupt was swallowed")
