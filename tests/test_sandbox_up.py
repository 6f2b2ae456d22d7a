"""gitops-sandbox up / down: the background sandbox, its repos, its trigger, its cleanup."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_git import git

from steps.sandbox import triggers
from steps.sandbox.__main__ import main as sandbox_main
from steps.sandbox.up import (
    APP_CONFIG,
    ENV_CONFIG,
    SERVICES,
    Layout,
    alive,
    parse_env,
    read_env,
    read_pid,
    render_env,
    substitutions,
)

pytestmark = pytest.mark.skipif(
    not os.access("/usr/bin/docker-registry", os.X_OK), reason="needs Debian's docker-registry"
)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("sandbox")
    started = time.monotonic()
    assert sandbox_main(["up", "--dir", str(root), "--fast"]) == 0
    print(f"\nsandbox up in {time.monotonic() - started:.2f}s")
    yield root
    sandbox_main(["down", "--dir", str(root)])


def auth_header(values: dict[str, str]) -> str:
    token = base64.b64encode(f"x-access-token:{values['GIT_TOKEN']}".encode()).decode()
    return f"http.extraHeader=Authorization: Basic {token}"


def test_sandbox_env_names_every_service(sandbox: Path) -> None:
    values = read_env(sandbox)
    for name in ("GIT_URL", "APP_REPO", "ENV_REPO", "REGISTRY", "KUBECONFIG", "GIT_TOKEN"):
        assert values[name], name
    assert values["REGISTRY"].startswith("127.0.0.1:")
    assert (sandbox / "sandbox.env").stat().st_mode & 0o077 == 0
    assert parse_env((sandbox / "secrets.env").read_text()) == {"GIT_TOKEN": values["GIT_TOKEN"]}
    with urllib.request.urlopen(f"http://{values['REGISTRY']}/v2/", timeout=5) as answer:
        assert answer.status == 200


def test_repositories_hold_the_example_and_the_configs(sandbox: Path) -> None:
    values = read_env(sandbox)
    app = Path(values["APP_REPO_DIR"])
    files = git("--git-dir", str(app), "ls-tree", "-r", "--name-only", "main").split()
    assert {"Dockerfile", "app.py", "test_app.py", "cloudbuild.yaml"} <= set(files)
    assert "k8s/deployment.yaml.tpl" in files
    expected = APP_CONFIG.read_text()
    assert git("--git-dir", str(app), "show", "main:cloudbuild.yaml") == expected
    assert git("--git-dir", str(app), "rev-list", "--count", "main").strip() == "1"
    env = Path(values["ENV_REPO_DIR"])
    assert (
        git("--git-dir", str(env), "show", "production:cloudbuild.yaml") == ENV_CONFIG.read_text()
    )


def test_git_server_wants_the_token(sandbox: Path, tmp_path: Path) -> None:
    values = read_env(sandbox)
    env = {"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_GLOBAL": os.devnull}
    with pytest.raises(AssertionError, match=r"401|Authentication|could not read"):
        git("ls-remote", values["ENV_REPO"], env=env)
    heads = git("-c", auth_header(values), "ls-remote", values["ENV_REPO"], env=env)
    assert "refs/heads/production" in heads


def test_the_token_is_on_no_command_line(sandbox: Path) -> None:
    token = read_env(sandbox)["GIT_TOKEN"].encode()
    for name in SERVICES:
        pid = read_pid(Layout(sandbox).pid_file(name))
        assert pid is not None and alive(pid), name
        assert token not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_kube_emulator_answers_through_the_kubeconfig(sandbox: Path) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(read_env(sandbox)["KUBECONFIG"])
    try:
        names = [ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items]
    finally:
        api.close()
    assert "default" in names


def test_gke_api_stand_in_serves_the_cluster(sandbox: Path) -> None:
    values = read_env(sandbox)
    request = urllib.request.Request(
        f"http://{values['GCE_METADATA_HOST']}/computeMetadata/v1/instance/service-accounts/default/token",
        headers={"Metadata-Flavor": "Google"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        token = json.load(answer)["access_token"]
    request = urllib.request.Request(
        f"{values['GITOPS_CONTAINER_API_URL']}/v1/{values['GITOPS_CLUSTER']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.load(answer)["endpoint"] == values["KUBE_URL"]


def test_a_push_to_candidate_triggers_a_build_and_others_do_not(
    sandbox: Path, tmp_path: Path
) -> None:
    values = read_env(sandbox)
    before = len(triggers.builds(sandbox))
    clone = tmp_path / "env"
    header = auth_header(values)
    git("-c", header, "clone", "-q", "--branch", "production", values["ENV_REPO"], str(clone))
    git("commit", "-q", "--allow-empty", "-m", "not a deployment", cwd=clone)
    git("-c", header, "push", "-q", "origin", "HEAD:refs/heads/elsewhere", cwd=clone)
    git("commit", "-q", "--allow-empty", "-m", "an attempt", cwd=clone)
    git("-c", header, "push", "-q", "origin", "HEAD:refs/heads/candidate", cwd=clone)
    sha = git("rev-parse", "HEAD", cwd=clone).strip()

    records = triggers.wait_for_builds(sandbox, before + 1, timeout=120)

    assert [r["commit"] for r in records[before:]] == [sha]
    assert records[-1]["status"] in ("SUCCESS", "FAILURE")
    log = Path(records[-1]["log"]).read_text()
    assert f"COMMIT_SHA={sha}" in log and "BRANCH_NAME=candidate" in log
    assert values["GIT_TOKEN"] not in log


def test_up_again_is_a_no_op_and_down_is_idempotent(tmp_path: Path) -> None:
    root = tmp_path / "sbx"
    assert sandbox_main(["up", "--dir", str(root), "--fast", "--no-trigger"]) == 0
    first = read_env(root)
    pids = [read_pid(Layout(root).pid_file(name)) for name in SERVICES]
    assert sandbox_main(["up", "--dir", str(root)]) == 0
    assert read_env(root) == first

    assert sandbox_main(["down", "--dir", str(root)]) == 0
    assert all(pid is not None and not alive(pid) for pid in pids)
    assert not list((root / "run").glob("*.pid"))
    assert sandbox_main(["down", "--dir", str(root)]) == 0
    assert sandbox_main(["down", "--dir", str(tmp_path / "never-up")]) == 0


def test_pushed_commits_reads_post_receive_lines() -> None:
    a, b, zero = "a" * 40, "b" * 40, "0" * 40
    lines = [
        f"{zero} {a} refs/heads/candidate",
        f"{a} {b} refs/heads/production",
        f"{a} {zero} refs/heads/candidate",
        f"{a} {b} refs/heads/candidate",
    ]
    assert triggers.pushed_commits(lines) == [a, b]


def test_env_file_round_trips_awkward_values() -> None:
    values = {"A": "plain", "B": "with space", "C": "it's $HOME", "D": ""}
    assert parse_env(render_env(values)) == values


def test_env_build_substitutions_name_the_sandbox_cluster() -> None:
    values = {
        "ENV_REPO": "http://127.0.0.1:1/env.git",
        "REGISTRY": "127.0.0.1:2",
        "GITOPS_CLUSTER": "projects/p/locations/here/clusters/c",
    }
    subs = substitutions(values, "env")
    assert (subs["_CLUSTER"], subs["_CLUSTER_LOCATION"]) == ("c", "here")
    assert subs["_ENV_REPO"] == values["ENV_REPO"]


def test_the_app_config_pushes_where_image_repo_says(tmp_path: Path) -> None:
    """The sandbox uses cloudbuild/app.yaml as users get it, with _IMAGE_REPO set."""
    import yaml

    from steps.cloudbuild.validate import main as validate

    text = APP_CONFIG.read_text()
    data = yaml.safe_load(text)
    assert data["substitutions"]["_IMAGE_REPO"] == (
        "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}"
    )
    steps = {step["id"]: step["args"] for step in data["steps"]}
    assert "--tag=${_IMAGE_REPO}/${_IMAGE}:$SHORT_SHA" in steps["build"]
    assert steps["push"] == ["push", "${_IMAGE_REPO}/${_IMAGE}:$SHORT_SHA"]
    rename = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/${_IMAGE}="
    assert f"--image={rename}${{_IMAGE_REPO}}/${{_IMAGE}}:$SHORT_SHA" in steps["update-manifest"]
    path = tmp_path / "cloudbuild.yaml"
    path.write_text(text)
    assert validate([str(path)]) == 0
