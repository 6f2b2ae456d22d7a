"""The libraries the stages share: each owns one outside system or one pure concern.

Stages (``steps/<stage>.py``, listed in ``steps/stages.py``) import these, never
each other; a library imports only libraries (scripts/checks/import_graph.py).
"""
