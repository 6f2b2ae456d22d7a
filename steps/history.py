"""gitops-history: every deployment attempt and the headline figures, from Git alone.

The env repo already holds the story: each commit on ``candidate`` is an
attempt (push-candidate's trailers say which source commit, build and images),
each commit on ``production`` a deployment (promote's ``Promoted-From`` and,
for a rollback, ``Rollback-From``), and verify-rollout's verdicts are notes on
the candidate commits under ``refs/notes/gitops`` (see ``steps.lib.deploy_notes``).

The flow: flags -> fetch only ``candidate``, ``production`` (``--shallow-since``
with ``--since``) and the notes tip (depth 1) into one private bare repository
-> two ``git log`` runs -> pure functions classify each attempt and compute the
figures -> table, JSON or a self-contained HTML page.

This module is the flags and what they mean; the work is in
``steps.lib.history_run`` (Git) over pure parts (``history_model``,
``history_chain``, ``history_text``, ``history_html``), imported once the
flags are parsed, so that ``--help`` costs little more than starting Python.

Outcome of an attempt (first rule that applies):

- ``promoted``: a production commit says ``Promoted-From: candidate@<it>``;
- ``failed``: its latest verdict note says ``failed``;
- ``superseded``: its latest verdict note says ``superseded``;
- ``pending``: none of the above and it is the newest attempt (for the path);
- ``not-promoted``: none of the above and newer attempts exist.

Figures, over the period [``--since``, ``--until``] (defaults: the first
attempt or deployment on record, and now); "in the period" means the time of
the commit that records the event (candidate commit for attempts, production
commit for deployments), committer dates:

- deployments per day: production commits carrying ``Promoted-From``
  (rollbacks included) in the period, divided by the period's length in days,
  counted as at least one day (a repo a few hours old does not deploy
  "thousands of times a day");
- success rate: promoted attempts / attempts that are not pending, among the
  attempts of the period;
- lead time: for each attempt whose first promotion lies in the period, that
  production commit's time minus the source commit's committer time (with
  ``--source-repo`` and the commit found there) or else minus the candidate
  commit's time; median, and p90 by nearest rank (the ceil(0.9 n)-th smallest);
- change failure rate: (failed attempts + promoted attempts that a later
  rollback moved away from, i.e. named in ``Rollback-From``) / (promoted +
  failed attempts), among the attempts of the period;
- time to restore: an incident starts at the first failed attempt after the
  last production change and ends at the next production change (promotion or
  rollback); its duration is end - start; median over the incidents that
  started in the period and have ended (those still open are counted apart);
- production now: the newest production commit carrying ``Promoted-From``
  (for ``--path``, the newest touching it), the candidate it names and its
  time ("since").
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from steps.lib.cli import StepParser, StepRun, add_common_options, run_step, version_text
from steps.lib.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

    from steps.lib.history_run import Config
    from steps.lib.provenance import Provenance

STEP = "history"
FORMATS = ("table", "json", "html")
DEFAULT_BUILD_URL = (
    "https://console.cloud.google.com/cloud-build/builds;region=global/{build_id}?project={project}"
)
URL_FIELDS = ("build_id", "project", "commit", "short_commit", "source_commit", "source_repo")

DESCRIPTION = """\
Every deployment attempt recorded on the env repo's candidate branch, what
became of it (promoted, failed, superseded, not-promoted, pending), rollbacks,
and the headline figures: deployments per day, success rate, lead time,
change failure rate, time to restore, what runs in production and since when.

examples:
  gitops-history --repo https://github.com/o/env --path web --since 30d
  gitops-history --repo . --format html --output history.html --project my-proj

dates (--since, --until): 2026-11-01, 2026-11-01T12:00:00Z, or 30d / 12h / 2w ago

environment:
  GIT_TOKEN, GIT_USERNAME      HTTPS token (user defaults to x-access-token)
  GIT_SSH_KEY, GIT_KNOWN_HOSTS SSH private key and known_hosts lines
  PROJECT_ID                   default for --project (build links)
"""


def build_parser() -> StepParser:
    parser = StepParser("gitops-history", DESCRIPTION)
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_option("--repo", required=True, metavar="URL", help="env repo URL or local path")
    parser.add_option("--path", metavar="SUBDIR", help="only attempts touching this service path")
    parser.add_option("--since", metavar="DATE", help="start of the period (default: all history)")
    parser.add_option("--until", metavar="DATE", help="end of the period (default: now)")
    parser.add_option(
        "--format",
        dest="fmt",
        choices=FORMATS,
        metavar="FORMAT",
        help="table (default), json, html",
    )
    parser.add_option("--output", metavar="FILE", help="write here instead of stdout")
    parser.add_option(
        "--build-url",
        metavar="TEMPLATE",
        help="link for a build; fields {build_id} {project} {commit} {short_commit} "
        "{source_commit} {source_repo} (default: the Cloud Build console's build page)",
    )
    parser.add_option(
        "--commit-url", metavar="TEMPLATE", help="link for a candidate commit (same fields)"
    )
    parser.add_option(
        "--project", metavar="ID", help="project for build links (default: $PROJECT_ID)"
    )
    parser.add_option(
        "--source-repo",
        metavar="DIR",
        help="local clone of the app repo: lead time starts at the source commit's time",
    )
    parser.add_option("--from", dest="candidate", metavar="BRANCH", help="default: candidate")
    parser.add_option("--to", dest="production", metavar="BRANCH", help="default: production")
    parser.add_option(
        "--chain",
        nargs="+",
        metavar="ENV",
        help="environments' branches after --from, in order (staging production): "
        "how far each release went",
    )
    add_common_options(parser)
    return parser


# --------------------------------------------------------------------------- flags into a Config


def parse_when(text: str, now: float, flag: str) -> int:
    """A date, a UTC datetime, or ``30d``/``12h``/``2w`` before ``now``: epoch seconds."""
    import re
    from datetime import UTC, datetime

    value = text.strip()
    relative = re.match(r"^(\d+)\s*([hdw])$", value)
    if relative:
        hours = {"h": 1, "d": 24, "w": 24 * 7}[relative.group(2)] * int(relative.group(1))
        return int(now - hours * 3600)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: expected YYYY-MM-DD, an ISO 8601 time or 30d/12h/2w"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def check_template(template: str, flag: str) -> str:
    """A URL template whose ``{fields}`` are all known."""
    try:
        template.format_map({name: "x" for name in URL_FIELDS})
    except (KeyError, ValueError, IndexError) as exc:
        raise UsageError(
            f"{flag} {template!r}: unknown field {exc}; use {', '.join(URL_FIELDS)}"
        ) from None
    return template


def config_from_args(args: Namespace, provenance: Provenance, now: float) -> Config:
    from pathlib import Path

    from steps.lib.git_inputs import parse_repo, validate_branch, validate_subpath
    from steps.lib.history_run import Config

    since = parse_when(args.since, now, "--since") if args.since else None
    until = parse_when(args.until, now, "--until") if args.until else None
    if since is not None and until is not None and until < since:
        raise UsageError("--until is before --since")
    candidate = validate_branch(args.candidate or "candidate", "--from")
    chain = tuple(validate_branch(env, "--chain") for env in args.chain or ())
    if chain and args.production:
        raise UsageError("--chain names the environments' branches: --to goes without it")
    if len(set(chain)) != len(chain) or candidate in chain:
        raise UsageError("--chain: each environment once, and not --from")
    production = chain[-1] if chain else validate_branch(args.production or "production", "--to")
    if candidate == production:
        raise UsageError("--from and --to must be different branches")
    source_repo = Path(args.source_repo) if args.source_repo else None
    if source_repo is not None and not source_repo.exists():
        raise UsageError(f"--source-repo {args.source_repo}: no such directory")
    return Config(
        location=parse_repo(args.repo),
        subdir=validate_subpath(args.path),
        candidate=candidate,
        production=production,
        since=since,
        until=until,
        fmt=args.fmt or "table",
        output=Path(args.output) if args.output else None,
        build_url=check_template(args.build_url or DEFAULT_BUILD_URL, "--build-url"),
        commit_url=check_template(args.commit_url, "--commit-url") if args.commit_url else None,
        project=args.project or provenance.project_id,
        source_repo=source_repo,
        chain=chain,
    )


def run(argv: Sequence[str] | None, step_run: StepRun) -> dict[str, Any]:
    args = build_parser().parse_step_args(argv)
    step_run.result_file = args.result_file
    from steps.lib.history_run import chain_history, history  # the work: only after the flags
    from steps.lib.provenance import Provenance

    now = time.time()
    config = config_from_args(args, Provenance.from_env(), now)
    if config.chain:
        return chain_history(config, now)
    return history(config, now)


def main(argv: Sequence[str] | None = None) -> int:
    return run_step(STEP, lambda step_run: run(argv, step_run))


if __name__ == "__main__":
    raise SystemExit(main())
