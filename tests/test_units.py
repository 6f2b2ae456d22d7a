"""Pure pieces, table-driven: image references, rules, scalars, templates, results."""

from __future__ import annotations

import json

import pytest

from steps.lib.cli import StepParser, env_name
from steps.lib.errors import ManifestError, UsageError
from steps.lib.flux_markers import split_marker_policy
from steps.lib.image_rules import parse_image_rule
from steps.lib.imageref import ImageRef, InvalidReference, canonical
from steps.lib.manifest_edit import plan_file
from steps.lib.manifest_splice import apply_edits, render_scalar, verify_plan
from steps.lib.output import fit_to_limit, redact, register_secret
from steps.lib.templates import parse_assignments, render_template

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest", "registry", "path"),
    [
        ("nginx", "nginx", None, None, "docker.io", "library/nginx"),
        ("nginx:1.27", "nginx", "1.27", None, "docker.io", "library/nginx"),
        ("bitnami/redis:7", "bitnami/redis", "7", None, "docker.io", "bitnami/redis"),
        ("localhost:5000/app:v1", "localhost:5000/app", "v1", None, "localhost:5000", "app"),
        ("localhost/app", "localhost/app", None, None, "localhost", "app"),
        (
            f"us-docker.pkg.dev/p/r/app:v1@{DIGEST}",
            "us-docker.pkg.dev/p/r/app",
            "v1",
            DIGEST,
            "us-docker.pkg.dev",
            "p/r/app",
        ),
        (f"gcr.io/p/app@{DIGEST}", "gcr.io/p/app", None, DIGEST, "gcr.io", "p/app"),
        (
            "127.0.0.1:5000/a/b/c:x_y-z.1",
            "127.0.0.1:5000/a/b/c",
            "x_y-z.1",
            None,
            "127.0.0.1:5000",
            "a/b/c",
        ),
    ],
)
def test_image_references_parse(
    text: str, repository: str, tag: str | None, digest: str | None, registry: str, path: str
) -> None:
    ref = ImageRef.parse(text)
    assert (ref.repository, ref.tag, ref.digest) == (repository, tag, digest)
    assert (ref.registry, ref.path) == (registry, path)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    ["", "UPPER/case", "app:", "app@sha256:short", "app:tag with space", ":v1", "a//b", "${IMAGE}"],
)
def test_invalid_image_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        ImageRef.parse(text)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "nginx"),
        ("bitnami/redis", "docker.io/bitnami/redis"),
    ],
)
def test_docker_hub_spellings_are_one_repository(a: str, b: str) -> None:
    assert canonical(a) == canonical(b)


def test_other_registries_are_not_docker_hub() -> None:
    assert canonical("gcr.io/nginx") != canonical("nginx")
    assert canonical("localhost:5000/nginx") != canonical("nginx")


@pytest.mark.parametrize(
    ("spec", "match", "policy"),
    [
        ("gcr.io/p/app:v1", "gcr.io/p/app", None),
        ("nginx=mirror.io/nginx:1", "docker.io/library/nginx", None),
        ("localhost:5000/app=localhost:5000/app2:v1", "localhost:5000/app", None),
        ("flux-system:podinfo=ghcr.io/s/podinfo:6", None, "flux-system:podinfo"),
    ],
)
def test_image_rule_forms(spec: str, match: str | None, policy: str | None) -> None:
    rule = parse_image_rule(spec)
    assert (rule.match, rule.policy) == (match, policy)


def test_rename_rule_also_matches_renamed_images() -> None:
    rule = parse_image_rule("nginx=mirror.io/nginx:1")
    assert rule.repositories == ("docker.io/library/nginx", "mirror.io/nginx")
    assert rule.applied_to(ImageRef.parse("mirror.io/nginx:0")) == ImageRef.parse(
        "mirror.io/nginx:1"
    )


def test_rename_without_tag_keeps_tag_and_digest() -> None:
    rule = parse_image_rule("gcr.io/old/app=gcr.io/new/app")
    old = ImageRef.parse(f"gcr.io/old/app:v1@{DIGEST}")
    assert str(rule.applied_to(old)) == f"gcr.io/new/app:v1@{DIGEST}"


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ("ns:app", ("ns:app", "image")),
        ("ns:app:tag", ("ns:app", "tag")),
        ("ns:app:name", ("ns:app", "name")),
        ("ns:app:digest", ("ns:app", "digest")),
        ("ns:app:other", ("ns:app:other", "image")),
    ],
)
def test_marker_policies(marker: str, expected: tuple[str, str]) -> None:
    assert split_marker_policy(marker) == expected


@pytest.mark.parametrize(
    ("value", "style", "written"),
    [
        ("gcr.io/p/app:v2", "", "gcr.io/p/app:v2"),
        ("gcr.io/p/app:v2", None, "gcr.io/p/app:v2"),
        ("1.10", "", '"1.10"'),
        ("true", "", '"true"'),
        ("1e3", "", '"1e3"'),
        ("20240101", "", '"20240101"'),
        ("y", "", '"y"'),
        ("0x1F", "", '"0x1F"'),
        ("12:30", "", '"12:30"'),
        ("1.2.3", "", "1.2.3"),
        ("sha256:" + "a" * 64, "", "sha256:" + "a" * 64),
        ("v1.10", "", "v1.10"),
        ("it's", "'", "'it''s'"),
        ('say "hi"', '"', '"say \\"hi\\""'),
        ("a: b", "", '"a: b"'),
        ("#x", "", '"#x"'),
    ],
)
def test_render_scalar_keeps_style_and_string_meaning(
    value: str, style: str | None, written: str
) -> None:
    assert render_scalar(value, style) == written


def test_verify_plan_rejects_an_edit_that_changes_anything_else() -> None:
    text = (
        "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: x.io/a:1\n"
    )
    plan = plan_file("p.yaml", text, [parse_image_rule("x.io/a:2")])
    good = apply_edits(text, plan.edits)
    verify_plan(plan, good)
    with pytest.raises(ManifestError, match="refusing to write: the edit would change more"):
        verify_plan(plan, good.replace("name: p", "name: q"))
    with pytest.raises(ManifestError, match="would not parse"):
        verify_plan(plan, good + "  - [\n")


def test_apply_edits_rejects_overlaps() -> None:
    from steps.lib.manifest_splice import TextEdit

    with pytest.raises(ValueError, match="overlapping"):
        apply_edits("abcdef", [TextEdit(0, 3, "x"), TextEdit(2, 4, "y")])


def test_templates() -> None:
    text, used = render_template(
        "t", "a: ${A}\nb: $${A}\nc: $A\nd: ${B}${A}\n", {"A": "1", "B": "2"}
    )
    assert text == "a: 1\nb: ${A}\nc: $A\nd: 21\n"
    assert used == {"A", "B"}


def test_template_errors_name_file_and_line() -> None:
    with pytest.raises(ManifestError) as caught:
        render_template("k8s/x.tpl", "a: 1\n\nb: ${NOPE} ${ALSO}\n", {})
    assert str(caught.value) == (
        "k8s/x.tpl:3: unknown placeholder ${NOPE} (give it with --set NOPE=VALUE) (and 1 more)"
    )
    with pytest.raises(ManifestError, match=r"x.tpl:1: \$\{1bad\} is not a valid placeholder"):
        render_template("x.tpl", "${1bad}", {})


def test_assignments() -> None:
    assert parse_assignments(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(UsageError, match="--set nope: expected NAME=VALUE"):
        parse_assignments(["nope"])


def test_env_names() -> None:
    assert env_name("--env-repo") == "GITOPS_ENV_REPO"
    assert env_name("--resolve-digests") == "GITOPS_RESOLVE_DIGESTS"


def test_parser_reads_environment_for_each_kind_of_option() -> None:
    parser = StepParser(prog="x", description="")
    parser.add_option("--name")
    parser.add_option("--count", type=int)
    parser.add_option("--flag", action="store_true")
    parser.add_option("--item", action="append", nargs="+")
    parser.add_option("--needed", required=True)
    env = {
        "GITOPS_NAME": "n",
        "GITOPS_COUNT": "3",
        "GITOPS_FLAG": "yes",
        "GITOPS_ITEM": "a b",
        "GITOPS_NEEDED": "here",
    }
    args = parser.parse_step_args([], env)
    assert (args.name, args.count, args.flag, args.item, args.needed) == (
        "n",
        3,
        True,
        [["a", "b"]],
        "here",
    )
    with pytest.raises(UsageError, match="GITOPS_COUNT='x': invalid literal"):
        parser.parse_step_args([], {**env, "GITOPS_COUNT": "x"})
    with pytest.raises(UsageError, match=r"--needed is required \(or set GITOPS_NEEDED\)"):
        parser.parse_step_args([], {})


def test_defaults_do_not_hide_the_environment() -> None:
    parser = StepParser(prog="x", description="")
    parser.add_option("--branch", default="candidate")
    parser.add_option("--attempts", type=int, default=10)
    assert parser.parse_step_args([], {}).branch == "candidate"
    assert parser.parse_step_args([], {"GITOPS_BRANCH": "main"}).branch == "main"
    assert parser.parse_step_args(["--branch", "x"], {"GITOPS_BRANCH": "main"}).branch == "x"
    assert parser.parse_step_args([], {"GITOPS_ATTEMPTS": "3"}).attempts == 3
    assert parser.parse_step_args([], {}).attempts == 10


def test_fit_to_limit_truncates_longest_list_and_counts() -> None:
    result = {
        "step": "s",
        "status": "changed",
        "changes": [{"n": i, "pad": "x" * 50} for i in range(500)],
    }
    text = fit_to_limit(result, 4096)
    data = json.loads(text)
    assert len(text.encode()) <= 4096
    assert len(data["changes"]) + data["changes_omitted"] == 500
    assert data["changes"][0] == {"n": 0, "pad": "x" * 50}


def test_secrets_are_redacted() -> None:
    register_secret("s3cr3t-token-value")
    assert redact("auth with s3cr3t-token-value done") == "auth with [REDACTED] done"
    assert "s3cr3t" not in fit_to_limit({"error": "token s3cr3t-token-value"})
