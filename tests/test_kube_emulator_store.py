"""The emulator's store: the event log that watches read from."""

from __future__ import annotations

from steps.sandbox.kube.store import Store

CM = ("", "configmaps")


def configmap(name: str, value: str) -> dict[str, object]:
    return {"metadata": {"name": name, "namespace": "default"}, "data": {"v": value}}


def test_events_after_are_exactly_the_newer_ones_in_order_even_once_the_log_wrapped() -> None:
    store = Store(history=10)
    for i in range(25):  # more changes than the log keeps
        store.put(CM, configmap(f"c{i % 3}", str(i)))
        if i % 7 == 0:
            store.remove(CM, "default", f"c{i % 3}")
    kept = [e.rv for e in store.events_after(0)]
    assert len(kept) == 10 and kept == sorted(kept)
    for rv in range(0, store.resource_version + 2):
        assert [e.rv for e in store.events_after(rv)] == [v for v in kept if v > rv], rv
    assert store.events_after(store.resource_version) == []


def test_after_compaction_no_event_is_newer_until_the_next_change() -> None:
    store = Store()
    store.put(CM, configmap("a", "1"))
    store.compact()
    assert store.events_after(0) == []
    store.put(CM, configmap("a", "2"))
    assert [e.type for e in store.events_after(0)] == ["MODIFIED"]
