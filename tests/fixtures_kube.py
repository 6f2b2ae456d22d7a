"""Fixtures for the Kubernetes API emulator (see steps/sandbox/kube/)."""

__all__: list[str] = []
