"""gitops-cloudbuild: validate and run cloudbuild.yaml files locally (tests, demo)."""
