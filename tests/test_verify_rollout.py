"""verify-rollout without a cluster: manifests, planning, flags, records (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps import verify_rollout as stage
from steps.lib import rollout_apply as applying
from steps.lib import rollout_plan as planning
from steps.lib import rollout_rules as rules
from steps.lib import rollout_watch as watching
from steps.lib.errors import ManifestError, UsageError
from steps.lib.kube import Resource
from steps.lib.live_record import (
    InventoryItem,
    LiveRecord,
    images_in,
    inventory_labels,
    parse_record,
    record_configmap,
)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  template:
    spec:
      initContainers:
        - name: migrate
          image: example.com/migrate:1
      containers:
        - name: app
          image: example.com/web:2
"""

SCOPES = {
    ("apps/v1", "Deployment"): planning.Scope(namespaced=True, served=True),
    ("v1", "ConfigMap"): planning.Scope(namespaced=True, served=True),
    ("v1", "Namespace"): planning.Scope(namespaced=False, served=True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): planning.Scope(namespaced=False, served=True),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): planning.Scope(False, True),
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def plan(manifests: list[planning.Manifest], **kwargs: object) -> list[planning.Planned]:
    options: dict[str, object] = {
        "namespace": "default",
        "namespace_given": False,
        "allow_cluster_scoped": False,
        "labels": {},
    }
    options.update(kwargs)
    scopes = {**SCOPES, **planning.crd_scopes(manifests)}
    return planning.plan(manifests, scopes, **options)  # type: ignore[arg-type]


# -- reading -------------------------------------------------------------------


def test_load_walks_yaml_files_and_expands_lists(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "a/deploy.yaml": DEPLOYMENT,
            "b/list.yml": "apiVersion: v1\nkind: List\nitems:\n"
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: one}}\n"
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}\n",
            "c/multi.yaml": "---\n# only a comment\n---\n"
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: three}\n",
            "README.md": "not yaml",
            ".hidden/x.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hidden}\n",
        },
    )
    manifests = planning.load_manifests(root)
    assert [(m.kind, m.name) for m in manifests] == [
        ("Deployment", "web"),
        ("ConfigMap", "one"),
        ("ConfigMap", "two"),
        ("ConfigMap", "three"),
    ]
    assert manifests[3].line == 4


@pytest.mark.parametrize(
    "kustomization", ["kustomization.yaml", "overlays/prod/kustomization.yml", "Kustomization"]
)
def test_a_kustomize_directory_is_refused_once_with_exit_2(
    tmp_path: Path, kustomization: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Applied raw, the base would go out without the overlay's patches: the
    # stage wants what the app build rendered. Refused before any cluster is
    # contacted (the kubeconfig named here does not exist).
    root = write(
        tmp_path / "m",
        {"base/deploy.yaml": DEPLOYMENT, kustomization: "resources: [base/deploy.yaml]\n"},
    )
    code = stage.main(["--manifests", str(root), "--kubeconfig", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("expects rendered manifests") == 1, err
    assert kustomization.rpartition("/")[2] in err


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("kind: ConfigMap\nmetadata: {name: x}\n", "x.yaml:1: object without apiVersion"),
        ("apiVersion: v1\nkind: ConfigMap\n", "x.yaml:1: ConfigMap without metadata.name"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {generateName: p-}\n",
            "generateName cannot be applied",
        ),
        ("- a\n- b\n", "not a Kubernetes object"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n", "x.yaml:4: invalid YAML"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: Bad_NS}\n",
            "not a valid namespace name",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: '1', a: '2'}\n",
            "x.yaml:4: duplicate key 'a'",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n"
            "  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"  a{i}: &a{i} [{', '.join(['*a' + str(i - 1) if i > 1 else '*a'] * 10)}]\n"
                for i in range(1, 8)
            ),
            "expand to more than 200,000 nodes",
        ),
    ],
)
def test_bad_manifests_name_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    write(tmp_path, {"x.yaml": text})
    with pytest.raises(ManifestError, match=problem.replace("(", r"\(")) as caught:
        planning.load_manifests(tmp_path)
    assert str(tmp_path / "x.yaml") in caught.value.message


def test_duplicates_are_refused(tmp_path: Path) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: same}\n"
    write(tmp_path, {"a.yaml": cm, "b.yaml": cm})
    with pytest.raises(
        ManifestError, match=r"b.yaml:1: ConfigMap/same: also defined at .*a.yaml:1"
    ):
        planning.load_manifests(tmp_path)


def test_empty_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no Kubernetes objects"):
        planning.load_manifests(tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        planning.load_manifests(tmp_path / "absent")


# -- planning ------------------------------------------------------------------

CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions: [{name: v1, served: true, storage: true}]
"""


def test_dependency_order_crds_namespaces_cluster_scoped_namespaced() -> None:
    text = "\n---\n".join(
        [
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}",
            DEPLOYMENT,
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}",
            CRD,
        ]
    )
    manifests = planning.parse_manifests("all.yaml", text)
    planned = plan(manifests, allow_cluster_scoped=True, namespace="prod")
    assert [str(p.ref) for p in planned] == [
        "CustomResourceDefinition/widgets.example.com",
        "Namespace/prod",
        "ClusterRole/r",
        "Widget/w",
        "Deployment/web",
    ]
    widget = planned[3]
    assert widget.served is False and widget.namespace == "prod"
    assert planned[4].obj["metadata"]["namespace"] == "prod"
    assert "namespace" not in manifests[1].obj["metadata"]  # the input is not modified


def test_cluster_scoped_kinds_need_the_flag() -> None:
    manifests = planning.parse_manifests(
        "r.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r}"
    )
    with pytest.raises(ManifestError, match="ClusterRole/r: cluster-scoped: pass --allow-cluster"):
        plan(manifests)


def test_unknown_kinds_and_namespace_conflicts_are_refused() -> None:
    unknown = planning.parse_manifests(
        "w.yaml", "apiVersion: x.io/v1\nkind: Thing\nmetadata: {name: t}"
    )
    with pytest.raises(ManifestError, match=r"x\.io/v1 Thing is not served by the cluster"):
        plan(unknown)
    elsewhere = planning.parse_manifests(
        "c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: other}"
    )
    with pytest.raises(ManifestError, match="namespace other differs from --namespace prod"):
        plan(elsewhere, namespace="prod", namespace_given=True)
    assert plan(elsewhere, namespace="prod")[0].namespace == "other"


def test_record_labels_are_added_to_every_object() -> None:
    manifests = planning.parse_manifests("d.yaml", DEPLOYMENT)
    planned = plan(manifests, labels=inventory_labels("prod"))
    labels = planned[0].obj["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "gitops-steps",
        "gitops-steps.dev/record": "prod",
    }


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10m", 600), ("90s", 90), ("1h30m", 5400), ("1.5m", 90), ("45", 45), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert stage.parse_duration(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["", "10 m", "m", "1d", "5x"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="--timeout"):
        stage.parse_duration(text, "--timeout")


# -- prune -----------------------------------------------------------------------


def test_prune_candidates_keep_manifests_and_never_namespaces_or_crds() -> None:
    found = [
        (InventoryItem("apps/v1", "Deployment", "prod", "web"), "u1"),
        (InventoryItem("apps/v1", "Deployment", "prod", "old"), "u2"),
        (InventoryItem("v1", "Namespace", None, "prod"), "u3"),
        (InventoryItem("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "w"), "u4"),
    ]
    keep = {("apps", "Deployment", "prod", "web")}
    assert applying.prune_candidates(found, keep) == [found[1]]


# -- flags -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        ([], "--manifests is required"),
        (["--manifests", "m", "--record", "prod"], "--record needs --commit"),
        (["--manifests", "m", "--prune"], "--prune needs --record"),
        (["--manifests", "m", "--record", "Prod_1", "--commit", "abc"], "--record Prod_1"),
        (["--manifests", "m", "--timeout", "soon"], "--timeout soon"),
        (["--manifests", "m", "--rollback-on-failure", "/nonexistent"], "--rollback-on-failure"),
        (["--manifests", "m", "--rollback-timeout", "1m"], "only goes with --rollback-on-failure"),
        (
            [
                *("--manifests", "m", "--rollback-on-failure", "/"),
                *("--timeout", "2m", "--rollback-timeout", "2m"),
            ],
            "less than --timeout (2m0s), which it is part of",
        ),
    ],
)
def test_flag_errors_exit_2(
    argv: list[str],
    problem: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("COMMIT_SHA", raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("GITOPS_"):
            monkeypatch.delenv(name)
    assert stage.main(argv) == 2
    assert problem in capsys.readouterr().err


def test_commit_falls_back_to_cloud_build_commit_sha(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMIT_SHA", "abc123")
    args = stage.build_parser().parse_step_args(["--manifests", "m", "--record", "prod"], {})
    assert stage.config_from_args(args).commit == "abc123"


# -- reporting -------------------------------------------------------------------


def test_summary_table_and_failure_report() -> None:
    resource = Resource("apps", "v1", "Deployment", "deployments", True)
    target = applying.Target(planning.ObjRef("apps", "Deployment", "prod", "web"), resource, 2, {})
    target.verdict = rules.current(rules.ROLLED_OUT, "3 of 3 updated replicas available")
    lines = watching.summary_table([target])
    assert lines[0].split() == ["OBJECT", "NAMESPACE", "STATUS", "DETAIL"]
    assert lines[1].startswith("Deployment/web  prod")
    failure = watching.Failure(
        "Deployment/web",
        "prod",
        "CrashLoopBackOff",
        "back-off 10s",
        pod="web-1",
        container="app",
        restarts=3,
        events=["Pod/web-1: BackOff: Back-off restarting failed container"],
        logs=["boom"],
    )
    report = failure.report()
    assert report[0] == (
        "rollout failed: Deployment/web, pod web-1, container app: CrashLoopBackOff: back-off 10s"
    )
    assert "  restarts: 3" in report and "    | boom" in report


# -- the live record -------------------------------------------------------------


def test_live_record_round_trips_through_its_configmap() -> None:
    record = LiveRecord(
        name="prod",
        namespace="apps",
        commit="0123abcd",
        build_id="b-1",
        time="2026-11-26T06:00:00Z",
        images=("example.com/web:2",),
        inventory=(InventoryItem("apps/v1", "Deployment", "apps", "web"),),
    )
    configmap = record_configmap(record)
    assert configmap["metadata"]["name"] == "gitops-steps-prod"
    assert "gitops-steps.dev/record" not in configmap["metadata"]["labels"]  # never pruned
    assert parse_record(configmap) == record
    assert parse_record({"metadata": {"name": "gitops-steps-x"}, "data": {}}) is None


def test_images_of_pod_templates() -> None:
    manifests = planning.parse_manifests("d.yaml", DEPLOYMENT)
    cron = {
        "kind": "CronJob",
        "spec": {
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"image": "c:1"}]}}}}
        },
    }
    assert images_in([manifests[0].obj, cron]) == (
        "c:1",
        "example.com/migrate:1",
        "example.com/web:2",
    )


def test_images_of_pod_templates_and_ephemeral_containers() -> None:
    """The live record reads pod specs from the same table update-manifest pins with:
    a PodTemplate keeps its spec at ``template.spec``, and ephemeral containers count."""
    template = {"kind": "PodTemplate", "template": {"spec": {"containers": [{"image": "t:1"}]}}}
    pod = {
        "kind": "Pod",
        "spec": {"containers": [{"image": "p:1"}], "ephemeralContainers": [{"image": "e:1"}]},
    }
    custom = {"kind": "Rollout", "spec": {"template": {"spec": {"containers": [{"image": "r:1"}]}}}}
    assert images_in([template, pod, custom]) == ("e:1", "p:1", "r:1", "t:1")
