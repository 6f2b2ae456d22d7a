"""The cluster flags every cluster-facing stage shares (verify-rollout, and promote
for --require-live), and the defaults their help shows. Light on purpose: a
stage's ``--help`` imports this, not ``steps.lib.kube_access``, which reads
the flags (``access_from_args``) and connects, nor ``steps.lib.lease``."""

from __future__ import annotations

from steps.lib.cli import StepParser

DEFAULT_CONTAINER_API = "https://container.googleapis.com"
LEASE_DURATION = 30
"""Seconds a holder of the Lease lock that stopped renewing keeps it (``steps.lib.lease``)."""


def add_access_options(parser: StepParser) -> None:
    """The cluster flags (verify-rollout, and promote for --require-live)."""
    parser.add_option(
        "--cluster",
        metavar="projects/P/locations/L/clusters/C",
        help="GKE cluster: endpoint and CA from the GKE API, token from ADC",
    )
    parser.add_option(
        "--private-endpoint",
        action="store_true",
        help="with --cluster, use the control plane's private IP endpoint",
    )
    parser.add_option(
        "--dns-endpoint",
        action="store_true",
        help="with --cluster, use the control plane's DNS-based endpoint",
    )
    parser.add_option(
        "--container-api-url",
        metavar="URL",
        help=f"GKE API base URL (default {DEFAULT_CONTAINER_API})",
    )
    parser.add_option("--kubeconfig", metavar="PATH", help="kubeconfig file")
    parser.add_option("--context", metavar="NAME", help="kubeconfig context")
    parser.add_option(
        "--in-cluster", action="store_true", help="use the pod's service account (in a cluster)"
    )
    parser.exclusive(
        ("--cluster", "--private-endpoint", "--dns-endpoint", "--container-api-url"),
        ("--kubeconfig", "--context"),
        ("--in-cluster",),
    )
