"""GA built-in kinds are known without discovery, and known right.

Every row of ``steps.lib.builtin_kinds`` must be what discovery says (the
emulator's, which tests/test_kubectl_conformance.py holds to the real
kubectl's reading); and a rollout of built-in kinds asks discovery nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from steps import verify_rollout
from steps.lib import kubehttp
from steps.lib.builtin_kinds import BUILT_IN, built_in
from steps.lib.kube import Resource
from steps.lib.kube_access import Access, connect
from steps.sandbox.kube import KubeEmulator


@pytest.mark.parametrize("api_version", sorted(BUILT_IN))
def test_each_built_in_row_is_what_discovery_serves(kube: KubeEmulator, api_version: str) -> None:
    api = connect(Access(kubeconfig=str(kube.kubeconfig)))
    served = api.resources(api_version)
    assert served is not None, f"{api_version} not served"
    for kind, (plural, namespaced) in BUILT_IN[api_version].items():
        group, _, version = api_version.rpartition("/")
        assert served.get(kind) == Resource(group, version, kind, plural, namespaced)
        assert api.resource(api_version, kind) == served[kind]


def test_other_kinds_are_not_assumed() -> None:
    assert built_in("apps/v1beta1", "Deployment") is None
    assert built_in("v1", "Thing") is None
    assert built_in("example.com/v1", "Deployment") is None


def test_a_rollout_of_built_in_kinds_asks_discovery_nothing(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths: list[str] = []
    real = kubehttp.Transport.request

    def recorded(self: Any, method: str, path: str, **kwargs: Any) -> Any:
        paths.append(path.split("?")[0])
        return real(self, method, path, **kwargs)

    monkeypatch.setattr(kubehttp.Transport, "request", recorded)
    objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
         "spec": {"ports": [{"port": 80}]}},
    ]  # fmt: skip
    (tmp_path / "m.yaml").write_text(yaml.safe_dump_all(objects))
    argv = ["--manifests", str(tmp_path / "m.yaml"), "--kubeconfig", str(kube.kubeconfig)]
    assert verify_rollout.main(argv) == 0
    discovery = {"/api", "/apis", *(f"/api/{v}" for v in BUILT_IN if "/" not in v)}
    discovery |= {f"/apis/{v}" for v in BUILT_IN if "/" in v}
    assert paths and not discovery & set(paths), paths
    assert paths[0].endswith("/configmaps/c")  # the dry run is the first request
