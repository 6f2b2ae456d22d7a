"""Load build configs with the Google Cloud CLI's own loader: the outside oracle.

Run with gcloud's bundled Python (see tests/test_cloudbuild_oracle.py):
``python gcloud_loader.py SDK_ROOT CONFIG...`` prints one JSON line per
config: ``{"path", "ok", "error"}``, where ``error`` is gcloud's message
without its ``interpreting PATH as build config: `` / ``validating PATH as
build config: `` prefix. Offline: no credentials, no API call.
"""

import json
import sys


def main() -> int:
    root, paths = sys.argv[1], sys.argv[2:]
    sys.path[:0] = [f"{root}/lib", f"{root}/lib/third_party"]
    from googlecloudsdk.api_lib.cloudbuild import config
    from googlecloudsdk.generated_clients.apis.cloudbuild.v1 import cloudbuild_v1_messages

    for path in paths:
        try:
            config.LoadCloudbuildConfigFromPath(path, cloudbuild_v1_messages)
            print(json.dumps({"path": path, "ok": True, "error": ""}))
        except Exception as exc:  # every refusal gcloud makes
            text = str(exc)
            for prefix in (
                f"interpreting {path} as build config: ",
                f"validating {path} as build config: ",
                f"parsing {path}: ",
            ):
                text = text.removeprefix(prefix)
            print(json.dumps({"path": path, "ok": False, "error": text}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
