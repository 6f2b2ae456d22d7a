"""Benchmark: update-manifest --in-place on a large generated env repo.

2,000 files holding 10,000 documents; the image being pinned appears in 20
of them. Prints the stage's time and its ratio to baselines measured in the
same process (machines here are noisy, so only ratios mean much):

- naive: round-trip every file through ruamel.yaml (load, set images, dump),
  which is what most updaters do;
- parse-all: our engine without the cheap byte check (every file parsed).

Target (issue 2): at least 10x faster than naive and under 1 second.

Then Flux markers in one long file (issue 11): one marked document and
``--marker-documents`` others (8,000; this took 61 s when the marker search
was quadratic). Baseline: composing the same text, which any parse must do;
the marker run must stay within a small multiple of it, at 1/8 the documents
and at full size alike (linear).
Run: .venv/bin/python benchmarks/bench_update_manifest.py [--files N] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from steps import update_manifest
from steps.lib.image_rules import parse_image_rule
from steps.lib.manifest_edit import plan_file

TARGET = "us-docker.pkg.dev/acme/apps/checkout"

DOCUMENT = """\
---
# {name}: generated for the benchmark
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}, team: "{team}"}}
spec:
  replicas: 3
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: main
          image: {image}
          ports:
            - containerPort: 8080
          env:
            - name: LOG_LEVEL
              value: info
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


def generate(root: Path, files: int, docs_per_file: int, hits: int) -> None:
    """``files`` files of ``docs_per_file`` documents; ``hits`` files use TARGET."""
    step = max(files // hits, 1)
    for index in range(files):
        directory = root / f"service-{index // 50:03}"
        directory.mkdir(parents=True, exist_ok=True)
        pairs = []
        for doc in range(docs_per_file // 2 + docs_per_file % 2):
            name = f"svc-{index}-{doc}"
            if index % step == 0 and doc == 0 and index // step < hits:
                image = f"{TARGET}:v1"
            else:
                image = f"us-docker.pkg.dev/acme/apps/other-{index}-{doc}:v1"
            pairs.append(DOCUMENT.format(name=name, team=f"t{index % 7}", image=image))
        text = "".join(pairs)
        # Keep exactly docs_per_file documents: drop the last Service if odd.
        documents = text.split("---\n")[1:][:docs_per_file]
        (directory / f"app-{index:04}.yaml").write_text("".join("---\n" + d for d in documents))


def naive_ruamel(root: Path, image: str) -> int:
    from ruamel.yaml import YAML

    yaml = YAML()
    changed = 0
    for path in sorted(root.rglob("*.yaml")):
        documents = list(yaml.load_all(path.read_text()))
        for document in documents:
            spec = (document or {}).get("spec", {}) or {}
            for container in spec.get("template", {}).get("spec", {}).get("containers", []):
                if str(container.get("image", "")).startswith(TARGET + ":"):
                    container["image"] = image
                    changed += 1
        out = io.StringIO()
        yaml.dump_all(documents, out)
    return changed


def parse_all(root: Path, image: str) -> int:
    rules = [parse_image_rule(image)]
    changed = 0
    for path in sorted(root.rglob("*.yaml")):
        changed += len(plan_file(str(path), path.read_text(), rules).changes)
    return changed


MARKED = """\
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: checkout
spec:
  values:
    image: {image}:v1 # {{"$imagepolicy": "flux-system:checkout"}}
"""
OTHER = """\
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-{index}
data:
  image: {image}-{index}:v1
  note: "#{index} is not a marker"
"""


def marker_text(others: int) -> str:
    """One marked document among ``others`` documents, the marked one in the middle."""
    documents = [OTHER.format(index=i, image=TARGET) for i in range(others)]
    documents.insert(others // 2, MARKED.format(image=TARGET))
    return "".join(documents)


def time_markers(text: str) -> tuple[float, float]:
    """(seconds to plan the marker change, seconds to compose the same text)."""
    from steps.lib.yaml_nodes import compose_documents

    rule = parse_image_rule(f"flux-system:checkout={TARGET}:v2")
    start = time.perf_counter()
    plan = plan_file("values.yaml", text, [rule])
    planned = time.perf_counter() - start
    assert len(plan.changes) == 1, plan.changes
    start = time.perf_counter()
    compose_documents("values.yaml", text)
    return planned, time.perf_counter() - start


def run_stage(root: Path, image: str) -> int:
    with contextlib.redirect_stderr(io.StringIO()):
        code = update_manifest.main(["--in-place", str(root), "--image", image])
    assert code == 0, code
    return 20


def timed(function: Callable[[Path, str], int], root: Path, image: str) -> float:
    start = time.perf_counter()
    function(root, image)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--documents", type=int, default=10000)
    parser.add_argument("--hits", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--marker-documents", type=int, default=8000)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-update-manifest-") as tmp:
        root = Path(tmp)
        generate(root, options.files, options.documents // options.files, options.hits)
        count = sum(p.read_text().count("\n---\n") + 1 for p in root.rglob("*.yaml"))
        size = sum(p.stat().st_size for p in root.rglob("*.yaml"))
        print(f"env repo: {options.files} files, {count} documents, {size / 1e6:.1f} MB")

        stage = [timed(run_stage, root, f"{TARGET}:v{n + 2}") for n in range(options.repeat)]
        everything = timed(parse_all, root, f"{TARGET}:v99")
        naive = timed(naive_ruamel, root, f"{TARGET}:v100")

    ours = statistics.median(stage)
    runs = ", ".join(f"{t:.3f}" for t in stage)
    print(f"update-manifest --in-place       {ours:8.3f} s  (median of {runs})")
    print(f"parse every file (no byte check) {everything:8.3f} s  ratio {everything / ours:6.1f}x")
    print(f"naive ruamel round-trip          {naive:8.3f} s  ratio {naive / ours:6.1f}x")
    verdict = "met" if naive / ours >= 10 and ours < 1.0 else "NOT met"
    print(f"target (>= 10x faster than naive, < 1 s): {verdict}")

    others = options.marker_documents
    print(f"\nFlux marker: 1 marked document among {others} others, in one file")
    ratios = []
    for count in (others // 8, others):
        planned, composed = time_markers(marker_text(count))
        ratios.append(planned / composed)
        print(
            f"  {count:6} others: markers {planned:7.3f} s, compose alone {composed:7.3f} s, "
            f"ratio {planned / composed:5.2f}x"
        )
    growth = ratios[1] / ratios[0]
    print(f"  ratio at {others} vs at {others // 8}: {growth:.2f} (linear: ~1; quadratic: ~8)")
    print(f"  target (linear, ratio growth < 2): {'met' if growth < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
