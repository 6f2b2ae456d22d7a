"""A flag on the command line always wins over a GITOPS_* variable, including the
variable of an option the flag excludes (``--kubeconfig`` while ``GITOPS_CLUSTER``
is set)."""

from __future__ import annotations

import pytest

from steps.lib.cli import StepParser
from steps.lib.errors import UsageError
from steps.lib.kube_access import access_from_args

CLUSTER = "projects/p/locations/europe-west1/clusters/c"


def parser() -> StepParser:
    p = StepParser(prog="demo", description="")
    p.add_option("--cluster")
    p.add_option("--dns-endpoint", action="store_true")
    p.add_option("--kubeconfig")
    p.add_option("--context")
    p.add_option("--in-cluster", action="store_true")
    p.add_option("--timeout", default="10m")
    p.exclusive(("--cluster", "--dns-endpoint"), ("--kubeconfig", "--context"), ("--in-cluster",))
    return p


def test_a_flag_outranks_the_variables_of_the_ways_it_excludes() -> None:
    env = {"GITOPS_CLUSTER": CLUSTER, "GITOPS_DNS_ENDPOINT": "true", "GITOPS_TIMEOUT": "2m"}
    args = parser().parse_step_args(["--kubeconfig", "k"], env)
    assert (args.kubeconfig, args.cluster, args.dns_endpoint) == ("k", None, False)
    assert args.timeout == "2m"  # variables of unrelated options still count


def test_variables_of_the_chosen_way_still_fill_it_in() -> None:
    env = {"GITOPS_CLUSTER": CLUSTER, "GITOPS_CONTEXT": "ctx"}
    args = parser().parse_step_args(["--kubeconfig", "k"], env)
    assert (args.kubeconfig, args.context, args.cluster) == ("k", "ctx", None)


def test_a_boolean_flag_outranks_too() -> None:
    args = parser().parse_step_args(["--in-cluster"], {"GITOPS_KUBECONFIG": "k"})
    assert (args.in_cluster, args.kubeconfig) == (True, None)


def test_without_flags_the_variables_decide() -> None:
    args = parser().parse_step_args([], {"GITOPS_CLUSTER": CLUSTER})
    assert args.cluster == CLUSTER


def test_unknown_flags_in_a_declaration_are_a_bug() -> None:
    with pytest.raises(ValueError, match="unknown flag"):
        parser().exclusive(("--cluster",), ("--no-such-flag",))


@pytest.mark.parametrize("stage", ["verify_rollout", "promote"])
def test_the_stages_take_kubeconfig_over_gitops_cluster(
    stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox's sandbox.env sets GITOPS_CLUSTER; a user passes --kubeconfig."""
    import importlib

    module = importlib.import_module(f"steps.{stage}")
    monkeypatch.setenv("GITOPS_CLUSTER", CLUSTER)
    monkeypatch.setenv("GITOPS_CONTAINER_API_URL", "http://127.0.0.1:1")
    required = {"verify_rollout": ["--manifests", "k8s"], "promote": ["--repo", "r"]}[stage]
    args = module.build_parser().parse_step_args([*required, "--kubeconfig", "/tmp/kc"])
    access = access_from_args(args)
    assert access.kubeconfig == "/tmp/kc" and access.cluster is None


def test_contradicting_flags_on_the_command_line_are_still_refused() -> None:
    from steps.verify_rollout import build_parser

    argv = ["--manifests", "k8s", "--kubeconfig", "k", "--cluster", CLUSTER]
    with pytest.raises(UsageError, match="exclude each other"):
        access_from_args(build_parser().parse_step_args(argv, {}))
