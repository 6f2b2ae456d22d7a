"""gitops-steps: GitOps continuous delivery to GKE as Cloud Build steps.

Importing this package must stay cheap: no stage imports ``git`` or
``kubernetes`` at module level, so ``--help`` works in every image.
"""

__version__ = "0.1.0"
