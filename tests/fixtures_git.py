"""Fixtures for the loopback Git server (see steps/sandbox/gitserver.py)."""
