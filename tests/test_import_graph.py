"""scripts/checks/import_graph.py: which imports are edges, and that cycles are found."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

CHECK = Path(__file__).resolve().parents[1] / "scripts" / "checks" / "import_graph.py"


@pytest.fixture(scope="module")
def import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", CHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = module
    spec.loader.exec_module(module)
    return module


KNOWN = {"pkg", "pkg.sub", "pkg.other", "pkg.user"}


def edges_of(import_graph: ModuleType, tmp_path: Path, source: str) -> set[str]:
    path = tmp_path / "user.py"
    path.write_text(source, encoding="utf-8")
    found: set[str] = import_graph.imports_of(path, "pkg.user", KNOWN)
    return found


def test_from_package_import_submodule_is_an_edge_to_the_submodule_only(
    import_graph: ModuleType, tmp_path: Path
) -> None:
    assert edges_of(import_graph, tmp_path, "from pkg import sub\n") == {"pkg.sub"}
    assert edges_of(import_graph, tmp_path, "from pkg.sub import name\n") == {"pkg.sub"}


def test_a_name_from_a_package_init_is_an_edge_to_the_package(
    import_graph: ModuleType, tmp_path: Path
) -> None:
    assert edges_of(import_graph, tmp_path, "from pkg import VALUE, sub\n") == {"pkg", "pkg.sub"}


def test_lazy_and_type_checking_imports_count(import_graph: ModuleType, tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.sub import Thing\n"
        "def later() -> None:\n"
        "    from pkg.other import helper\n"
    )
    assert edges_of(import_graph, tmp_path, source) == {"pkg.sub", "pkg.other"}


def test_cycles_are_reported_once_each(import_graph: ModuleType) -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert list(import_graph.cycles(edges)) == [["a", "b", "c"]]
