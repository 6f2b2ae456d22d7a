"""A stage run as a command freezes its imports for the GC; called in-process, it does not."""

from __future__ import annotations

import gc

from steps.lib.cli import settle_imports


def test_settle_imports_only_for_a_command() -> None:
    gc.unfreeze()
    settle_imports(["--help"])  # in-process call (tests): nothing frozen
    assert gc.get_freeze_count() == 0
    try:
        settle_imports(None)  # the console script: everything so far frozen
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
