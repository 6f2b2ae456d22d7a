"""Names vulture reports but that are used: read by a framework, or kept on purpose.

scripts/test runs vulture with the settings in pyproject.toml ([tool.vulture]),
this file among its paths: each attribute named below counts as used.
"""

# Bare attribute reads on an unbound name are how vulture whitelists are written.
# ruff: noqa: F821, B018

_: object

# steps/lib/provenance.py: Provenance fields, filled from cli.provenance_of (every result has them).
_.short_sha
_.branch_name
# steps/cloudbuild/schema.py: the field types of the Build message, one name each.
_.BYTES
# steps/sandbox/registry.py: a TarInfo attribute that tarfile reads.
_.mtime
# steps/sandbox/gcp.py: Seen, the record of a request, keeps the header it came with.
_.authorization
# tests/test_kube_emulator.py: the kubernetes client's Configuration, read by its REST client.
_.retries
