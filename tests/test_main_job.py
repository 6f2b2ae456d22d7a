"""The main job on a new machine: image storage, the environment our scripts get,
exit codes for our own failures, and files written with the user's permissions."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from steps.cloudbuild import engine
from steps.lib import containers
from steps.lib.errors import ExternalError, InternalError, UsageError
from steps.lib.output import normal_mode, write_atomic
from steps.sandbox import up

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def umask_027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


# -- one image storage for every entry point


@pytest.mark.parametrize(
    ("filesystems", "root", "expected"),
    [
        ("nodev\tsysfs\nnodev\toverlay\n\text4\n", "ext4", "overlay"),
        ("nodev\tsysfs\n\text4\n", "ext4", "vfs"),  # no overlay in this kernel
        ("nodev\toverlay\n", "overlay", "vfs"),  # / is an overlay: overlay on it fails
    ],
)
def test_the_driver_is_overlay_only_where_it_works(
    filesystems: str, root: str, expected: str
) -> None:
    assert containers.choose_driver({}, filesystems, root) == expected


def test_storage_driver_variable_overrides() -> None:
    assert containers.choose_driver({"STORAGE_DRIVER": "vfs"}, "nodev\toverlay\n", "ext4") == "vfs"


def test_cache_dir_follows_the_variables_but_never_a_steps_home(tmp_path: Path) -> None:
    assert containers.cache_dir({"GITOPS_CACHE_DIR": str(tmp_path)}) == tmp_path
    xdg = {"XDG_CACHE_HOME": str(tmp_path), "HOME": "/builder/home"}
    assert containers.cache_dir(xdg) == tmp_path / "gitops-steps"
    # A build step's HOME=/builder/home must not move the storage away from ours.
    home = containers.cache_dir({"HOME": "/builder/home"})
    assert home == Path.home() / ".cache" / "gitops-steps"


def test_build_images_the_runner_and_the_sandbox_share_one_storage(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "GITOPS_CACHE_DIR": str(cache), "STORAGE_DRIVER": ""}
    env.pop("STORAGE_DRIVER")
    shell = subprocess.run(
        [sys.executable, "-m", "steps.lib.containers"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in shell.stdout.splitlines()
    )
    from_runner = engine.containers_environ({"GITOPS_CACHE_DIR": str(cache)})
    assert exported["CONTAINERS_STORAGE_CONF"] == from_runner["CONTAINERS_STORAGE_CONF"]
    text = (cache / "storage.conf").read_text()
    assert f'driver = "{containers.choose_driver({})}"' in text
    assert f'graphroot = "{cache / "storage"}"' in text


def test_an_existing_storage_conf_is_never_rewritten(tmp_path: Path) -> None:
    (tmp_path / "storage.conf").write_text('[storage]\ndriver = "vfs"\n')
    containers.environ({"GITOPS_CACHE_DIR": str(tmp_path), "STORAGE_DRIVER": "overlay"})
    assert (tmp_path / "storage.conf").read_text() == '[storage]\ndriver = "vfs"\n'


def test_build_images_reads_its_settings_from_the_one_module() -> None:
    script = (REPO / "scripts" / "build-images").read_text()
    assert "-m steps.lib.containers" in script
    assert "driver=" not in script  # no second choice of driver


# -- the environment our own scripts get


def test_build_images_gets_our_whole_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The bug: it got CONTAINERS_* alone, so bash died on "HOME: unbound variable".
    monkeypatch.setenv("GIT_DIR", "/somewhere/else")
    monkeypatch.setenv("GITOPS_CACHE_DIR", str(tmp_path))
    env = up.containers_env()
    for name in ("HOME", "PATH", "GITOPS_CACHE_DIR"):
        assert env[name] == os.environ[name]
    # The same storage as gitops-cloudbuild's docker builder, which reads os.environ.
    assert env["CONTAINERS_STORAGE_CONF"] == str(tmp_path / "storage.conf")
    assert "CONTAINERS_STORAGE_CONF" in env and "CONTAINERS_CONF" in env
    assert "GIT_DIR" not in env


def test_build_images_starts_with_that_environment(tmp_path: Path) -> None:
    """The script's first lines run under ``set -u`` with what we pass it."""
    env = {**up.containers_env(), "GITOPS_CACHE_DIR": str(tmp_path)}
    env["PATH"] = str(tmp_path / "bin") + os.pathsep + env["PATH"]
    # A buildah that says the base exists: nothing is built, the settings are made.
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "buildah"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    done = subprocess.run(
        [str(REPO / "scripts" / "build-images"), "--base-only"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "storage.conf").is_file()


def test_our_own_failures_are_never_exit_3() -> None:
    assert isinstance(up.build_images_error(3), ExternalError)  # the Debian mirror
    assert isinstance(up.build_images_error(2), UsageError)
    for code in (1, 70, 127):
        error = up.build_images_error(code)
        assert isinstance(error, InternalError)
        assert error.exit_code == 70 and "bug" in error.message


# -- files written with the user's permissions


def test_pages_and_results_get_the_users_normal_mode(tmp_path: Path, umask_027: None) -> None:
    page = tmp_path / "history.html"
    write_atomic(page, "<html></html>\n")
    assert stat.S_IMODE(page.stat().st_mode) == 0o640 == normal_mode()


def test_rewriting_a_file_keeps_its_mode(tmp_path: Path) -> None:
    page = tmp_path / "history.html"
    page.write_text("old")
    page.chmod(0o604)
    write_atomic(page, "new")
    assert stat.S_IMODE(page.stat().st_mode) == 0o604
    assert page.read_text() == "new"


def test_rendered_manifests_get_the_users_normal_mode(tmp_path: Path, umask_027: None) -> None:
    from steps.update_manifest import main as update_manifest

    out = tmp_path / "out" / "manifests"
    source_dir = str(REPO / "examples" / "app" / "k8s")
    image = "us-docker.pkg.dev/p/apps/hello:v1"
    code = update_manifest(
        ["--from", source_dir, "--to", str(out), "--set", "PROJECT_ID=p", "--image", image]
    )
    assert code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    source = REPO / "examples" / "app" / "k8s" / "deployment.yaml.tpl"
    rendered = out / "deployment.yaml"
    assert stat.S_IMODE(rendered.stat().st_mode) == stat.S_IMODE(source.stat().st_mode)


# -- the image cache does not grow with every build


def test_prune_picks_this_sandboxs_app_images_and_old_leftovers() -> None:
    now = 1_800_000_000.0
    images: list[dict[str, Any]] = [
        {"names": ["127.0.0.1:5000/sandbox-project/apps/hello:abc1234"], "created": now - 5},
        {"names": ["127.0.0.1:6000/sandbox-project/apps/hello:def5678"], "created": now - 5},
        {"names": ["127.0.0.1:7000/sandbox-project/apps/hello:0123456"], "created": now - 7200},
        {"names": ["localhost/gitops-steps-base:bookworm"], "created": now - 7200},
        {"names": ["localhost/gitops-steps/promote:dev"], "created": now - 7200},
        {"names": ["127.0.0.1:7000/elsewhere/app:1"], "created": now - 7200},
        {"names": None, "created": now - 7200},  # a layer cache image: kept for speed
    ]

    pruned = up.stale_app_images(images, "127.0.0.1:5000", now)

    assert pruned == [
        "127.0.0.1:5000/sandbox-project/apps/hello:abc1234",  # this sandbox's
        "127.0.0.1:7000/sandbox-project/apps/hello:0123456",  # a leftover
    ]  # another sandbox's fresh image may still be on its way to its registry


# -- help for every option a user types


def _without_help(parser: argparse.ArgumentParser) -> list[str]:
    return ["/".join(a.option_strings) or a.dest for a in parser._actions if not a.help]


def test_every_gitops_cloudbuild_run_option_has_help() -> None:
    from steps.cloudbuild import run

    assert _without_help(run.parser()) == []


def test_every_gitops_cloudbuild_demo_option_has_help(monkeypatch: pytest.MonkeyPatch) -> None:
    from steps.cloudbuild import demo

    seen: list[argparse.ArgumentParser] = []

    def stop(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        seen.append(self)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(SystemExit):
        demo.main([])
    assert seen and _without_help(seen[0]) == []


def test_a_bug_in_the_demo_is_exit_70_not_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from steps.cloudbuild import demo

    def broken() -> str:
        raise KeyError("ENV_REPO")  # a bug of ours, e.g. a missing sandbox.env key

    monkeypatch.setattr(demo.sandbox, "provide_python_base", broken)
    assert demo.main([]) == 70
    assert "internal error" in capsys.readouterr().err
