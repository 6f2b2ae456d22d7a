"""Fixtures for the loopback OCI registry (see steps/sandbox/registry.py)."""
