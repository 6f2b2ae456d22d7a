"""The env build end to end: verify-rollout (--record, --notes), then promote.

Real stages: push-candidate writes candidates to a bare env repo,
verify-rollout applies one of them to the Kubernetes emulator, records it as
live and notes its verdict in the repo, promote --require-live decides from
the live record, and gitops-history reads the story back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_git import git, log, write_tree

from steps import verify_rollout
from steps.history import main as history
from steps.lib.promotion import live_verdict, same_commit
from steps.promote import main as promote
from steps.push_candidate import main as push_candidate


def deployment(tag: str, behavior: str = "healthy") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {
                        "labels": {"app": "web"},
                        "annotations": {"sandbox.gitops-steps.dev/behavior": behavior},
                    },
                    "spec": {"containers": [{"name": "app", "image": f"example.com/web:{tag}"}]},
                },
            },
        },
        sort_keys=False,
    )


class Pipeline:
    def __init__(self, repo: Path, kube: Any, work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.repo, self.kube, self.work, self.monkeypatch = str(repo), kube, work, monkeypatch
        self.count = 0

    def candidate(self, tag: str, behavior: str = "healthy") -> str:
        self.count += 1
        manifest = deployment(tag, behavior)
        src = write_tree(self.work / f"src-{self.count}", {"deploy.yaml": manifest})
        assert push_candidate(["--repo", self.repo, "--from", str(src), "--path", "web"]) == 0
        return git("ls-remote", self.repo, "refs/heads/candidate").split()[0]

    def verify(self, sha: str, *extra: str, expect: int = 0) -> None:
        checkout = self.work / f"checkout-{sha[:8]}"
        if not checkout.exists():
            git("clone", "-q", self.repo, str(checkout))
            git("-C", str(checkout), "checkout", "-q", sha)
        argv = ["--manifests", str(checkout / "web"), "--kubeconfig", str(self.kube.kubeconfig)]
        argv += ["--namespace", "default", "--record", "prod", "--commit", sha, "--timeout", "60s"]
        assert verify_rollout.main([*argv, *extra]) == expect

    def promote(self, sha: str) -> tuple[int, dict[str, Any]]:
        result_file = self.work / "promote.json"
        result_file.unlink(missing_ok=True)
        argv = ["--repo", self.repo, "--commit", sha, "--path", "web"]
        argv += ["--require-live", "prod", "--kubeconfig", str(self.kube.kubeconfig)]
        code = promote([*argv, "--namespace", "default", "--result-file", str(result_file)])
        return code, json.loads(result_file.read_text())

    def production(self) -> list[str]:
        if not git("ls-remote", self.repo, "refs/heads/production").strip():
            return []
        return log(Path(self.repo), "production", "%s")


@pytest.fixture
def pipeline(
    bare_repo: Path,
    kube: Any,
    tmp_path: Path,
    git_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> Pipeline:
    for name in list(os.environ):
        if name.startswith("GITOPS_") or name in ("COMMIT_SHA", "KUBECONFIG"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return Pipeline(bare_repo, kube, tmp_path, monkeypatch)


def test_an_older_build_finishing_late_is_superseded_not_promoted(pipeline: Pipeline) -> None:
    older = pipeline.candidate("v1")
    newer = pipeline.candidate("v2")
    pipeline.verify(newer)

    code, result = pipeline.promote(older)

    assert code == 0
    assert result["status"] == "superseded"
    assert result["live"] == newer
    assert pipeline.production() == []

    code, result = pipeline.promote(newer)
    assert code == 0
    assert result["status"] == "pushed"
    assert pipeline.production()[0].startswith(f"Promote {newer[:12]}")


def test_a_rollback_that_runs_is_promoted_as_a_rollback(pipeline: Pipeline) -> None:
    first = pipeline.candidate("v1")
    second = pipeline.candidate("v2")
    pipeline.verify(second)
    assert pipeline.promote(second)[0] == 0
    pipeline.verify(first)  # re-running the old env build

    code, result = pipeline.promote(first)

    assert (code, result["kind"]) == (0, "rollback")
    assert pipeline.production()[0].startswith(f"Rollback to {first[:12]}")


def test_a_commit_that_is_not_live_is_refused(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    first = pipeline.candidate("v1")
    second = pipeline.candidate("v2")
    pipeline.verify(first)
    capsys.readouterr()

    code, result = pipeline.promote(second)

    assert code == 1
    assert result["status"] == "error"
    assert f"{second[:12]} is not what runs ({first[:12]} is live" in capsys.readouterr().err
    assert pipeline.production() == []


def test_no_live_record_is_refused(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    sha = pipeline.candidate("v1")
    capsys.readouterr()

    code, _ = pipeline.promote(sha)

    assert code == 1
    assert "--require-live prod: no live record in namespace default" in capsys.readouterr().err
    assert pipeline.production() == []


def test_verdicts_are_noted_in_the_env_repo_and_read_by_history(pipeline: Pipeline) -> None:
    good = pipeline.candidate("v1")
    bad = pipeline.candidate("v2", behavior="crash")
    pipeline.verify(good, "--notes", pipeline.repo)
    assert pipeline.promote(good)[0] == 0
    pipeline.verify(bad, "--notes", pipeline.repo, "--failure-grace", "1s", expect=1)

    notes = {
        sha: json.loads(git("--git-dir", pipeline.repo, "notes", "--ref=gitops", "show", sha))
        for sha in (good, bad)
    }
    assert notes[good]["outcome"] == "rolled-out"
    assert notes[bad]["outcome"] == "failed"
    assert notes[bad]["reason"].startswith("CrashLoopBackOff")

    report = pipeline.work / "history.json"
    argv = ["--repo", pipeline.repo, "--path", "web", "--format", "json", "--output", str(report)]
    assert history(argv) == 0
    outcomes = {a["commit"]: a["outcome"] for a in json.loads(report.read_text())["attempts"]}
    assert outcomes == {good: "promoted", bad: "failed"}


def test_an_unreachable_notes_repo_only_warns(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    sha = pipeline.candidate("v1")
    capsys.readouterr()
    pipeline.verify(sha, "--notes", str(pipeline.work / "no-such-repo.git"))
    assert "warning: --notes: could not record the outcome" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("commit", "live", "newer", "verdict"),
    [
        ("abc123", "abc123", False, "live"),
        ("abc1234567", "ABC1234", False, "live"),
        ("abc123", "def456", True, "superseded"),
        ("abc123", "def456", False, "not-live"),
        ("abc123", None, False, "not-live"),
    ],
)
def test_live_verdicts(commit: str, live: str | None, newer: bool, verdict: str) -> None:
    assert live_verdict(commit, live, newer) == verdict


def test_same_commit_by_prefix() -> None:
    assert same_commit("a" * 40, "a" * 12)
    assert not same_commit("a" * 40, "b" * 12)
