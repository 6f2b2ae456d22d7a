"""The gitops-history page: one self-contained HTML file, inline CSS and SVG.

No script, no font, no image and no stylesheet is loaded from anywhere: the
page is readable from a build artifact bucket or a laptop offline. Pure: data
in (the JSON rows and summary), text out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

from steps.lib.timefmt import duration, parse_rfc3339

OUTCOME_COLOURS = {
    "promoted": "#188038",
    "failed": "#d93025",
    "superseded": "#9334e6",
    "not-promoted": "#80868b",
    "pending": "#f29900",
}
ROLLBACK_COLOUR = "#1967d2"
LEAD_COLOUR = "#12b5cb"
WIDTH = 1000
LANE = 28
LEFT = 110
RIGHT = 20
MAX_ROLLBACK_LINES = 50

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#202124;
background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}
.sub{color:#5f6368;margin:0 0 16px;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:12px}
.card{border:1px solid #dadce0;border-radius:8px;padding:10px 14px;min-width:140px}
.card .v{font-size:22px;font-weight:600}.card .k{font-size:12px;color:#5f6368}
.card .n{font-size:11px;color:#5f6368}
.legend{font-size:12px;display:flex;gap:14px;margin:4px 0}
.legend span{display:inline-flex;align-items:center;gap:4px}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px}
svg{display:block;font-size:11px}svg text{fill:#5f6368}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;white-space:nowrap}
th{background:#f8f9fa}td.detail{white-space:normal;min-width:220px}
.scroll{overflow-x:auto}
.pill{color:#fff;border-radius:10px;padding:1px 8px;font-size:11px}
code{font-size:12px}a{color:#1a0dab}
"""


def _label(epoch: float, span: float) -> str:
    """A tick's label, as precise as the span needs (ticks an hour apart need no seconds)."""
    moment = datetime.fromtimestamp(epoch, UTC)
    if span < 600:
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


class _Scale:
    """Time -> x between LEFT and WIDTH - RIGHT."""

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.span = max(end - start, 1.0)

    def x(self, epoch: float) -> float:
        return LEFT + (epoch - self.start) / self.span * (WIDTH - LEFT - RIGHT)

    def ticks(self, height: int, top: int) -> list[str]:
        parts = []
        for i in range(5):
            moment = self.start + self.span * i / 4
            x = self.x(moment)
            anchor = "end" if i == 4 else "middle"
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 18}" stroke="#eee"/>'
                f'<text x="{x:.1f}" y="{height - 4}" text-anchor="{anchor}">'
                f"{escape(_label(moment, self.span))}</text>"
            )
        return parts


def cards(summary: Mapping[str, Any], environment: str = "production") -> str:
    """The figure cards; the last names what ``environment`` runs now."""
    production = summary.get("production")
    now = (
        (
            f"<code>{escape((production['candidate'] or '-')[:12])}</code>",
            f"since {production['since']}",
        )
        if production
        else ("-", "nothing promoted yet")
    )
    per_day = summary.get("deployments_per_day")
    decided = summary["attempts"] - summary["outcomes"]["pending"]
    items = [
        ("Deployments per day", "-" if per_day is None else f"{per_day:.2f}",
         f"{_count(summary['deployments'], 'deployment')}, "
         f"{_count(summary['rollbacks'], 'rollback')}"),
        ("Success rate", _percent(summary.get("success_rate")),
         f"{summary['outcomes']['promoted']} of {_count(decided, 'decided attempt')} promoted"),
        ("Lead time (median)", duration(summary.get("lead_time_median_s")),
         f"p90 {duration(summary.get('lead_time_p90_s'))}"),
        ("Change failure rate", _percent(summary.get("change_failure_rate")),
         f"{_count(summary['changes_failed'], 'failed change')}"),
        ("Time to restore (median)", duration(summary.get("time_to_restore_median_s")),
         f"{_count(summary['incidents'], 'incident')}, {summary['open_incidents']} open"),
    ]  # fmt: skip
    now_card = f'<div class="v">{now[0]}</div>'  # already HTML: a <code> element
    return "".join(
        f'<div class="card"><div class="k">{escape(k)}</div>'
        f'<div class="v">{escape(v)}</div><div class="n">{escape(n)}</div></div>'
        for k, v, n in items
    ) + (
        f'<div class="card"><div class="k">{escape(environment.capitalize())} now</div>'
        f'{now_card}<div class="n">{escape(now[1])}</div></div>'
    )


DEFAULT_TRIGGER = "env-candidate"


def rollback_command(commit: str, trigger: Mapping[str, str | None] | None = None) -> str:
    """The command that re-runs the env build of ``commit``: the rollback to it (pure)."""
    given = trigger or {}
    argv = ["gcloud", "builds", "triggers", "run", given.get("name") or DEFAULT_TRIGGER]
    argv.append(f"--sha={commit}")
    region = given.get("region")
    if region and region != "global":
        argv.append(f"--region={region}")
    if given.get("project"):
        argv.append(f"--project={given['project']}")
    return " ".join(argv)


def env_build_seconds(attempts: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per attempt with a verdict: candidate pushed (the trigger) to the first verdict."""
    seconds = []
    for r in attempts:
        start, verdict = parse_rfc3339(r.get("time")), parse_rfc3339(r.get("first_verdict_time"))
        if start is not None and verdict is not None and verdict >= start:
            seconds.append(verdict - start)
    return seconds


def latest_status(
    attempts: Sequence[Mapping[str, Any]], production: Mapping[str, Any] | None
) -> tuple[str, str]:
    """The pill and caption for the newest env build: a rollback re-run after the newest
    attempt is that build (the newest attempt's outcome would hide it)."""
    newest = parse_rfc3339(attempts[0]["time"]) if attempts else None
    since = parse_rfc3339(production.get("since")) if production else None
    rolled_back_last = since is not None and (newest is None or since >= newest)
    if production and production.get("rollback") and rolled_back_last:
        target = str(production.get("candidate") or "")[:12]
        pill = f'<span class="pill" style="background:{ROLLBACK_COLOUR}">rollback</span>'
        return pill, f"to {target} at {production['since']}"
    if not attempts:
        return "-", "no attempts yet"
    latest = attempts[0]
    colour = OUTCOME_COLOURS.get(latest["outcome"], "#000")
    pill = f'<span class="pill" style="background:{colour}">{escape(latest["outcome"])}</span>'
    return pill, f"{latest['commit'][:12]} at {latest['time']}"


def glance(attempts: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> str:
    """What the Cloud Build dashboard shows at a glance: latest status, average env
    build duration, pass/fail rate. ``attempts`` newest first."""
    status, where = latest_status(attempts, summary.get("production"))
    durations = env_build_seconds(attempts)
    average = sum(durations) / len(durations) if durations else None
    outcomes = summary["outcomes"]
    passed = outcomes["promoted"] + outcomes["superseded"]
    failed = outcomes["failed"]
    rate = passed / (passed + failed) if passed + failed else None
    items = [
        ("Latest status", status, where),
        ("Env build (average)", escape(duration(average)),
         f"candidate push to verdict, {_count(len(durations), 'build')}"),
        ("Pass / fail", escape(f"{passed} / {failed}"), f"{_percent(rate)} passed"),
    ]  # fmt: skip
    return "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{v}</div>'
        f'<div class="n">{escape(n)}</div></div>'
        for k, v, n in items
    )


def timeline(
    attempts: Sequence[Mapping[str, Any]],
    deployments: Sequence[Mapping[str, Any]],
    scale: _Scale,
) -> str:
    """One lane per outcome, a dot per attempt; rollbacks as blue markers and lines."""
    top = 22
    lanes = {name: top + LANE * i + LANE // 2 for i, name in enumerate(OUTCOME_COLOURS)}
    height = top + LANE * len(lanes) + 22
    parts = [
        f'<svg id="timeline" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="attempts over time">'
    ]
    parts += scale.ticks(height, top)
    for name, y in lanes.items():
        parts.append(f'<text x="{LEFT - 10}" y="{y + 4}" text-anchor="end">{escape(name)}</text>')
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}" stroke="#f1f3f4"/>')
    parts.append(f'<text x="{LEFT - 10}" y="14" text-anchor="end">rollbacks</text>')
    rollbacks = [d for d in deployments if d.get("rollback_from") and parse_rfc3339(d.get("time"))]
    # A line across the lanes per rollback, unless there are so many they would hide the dots.
    lines = len(rollbacks) <= MAX_ROLLBACK_LINES
    for deployment in rollbacks:
        x = scale.x(parse_rfc3339(deployment["time"]) or 0.0)
        line = (
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - 18}" '
            f'stroke="{ROLLBACK_COLOUR}" stroke-dasharray="3 3"/>'
            if lines
            else ""
        )
        parts.append(
            f'<g class="rollback"><title>rollback to '
            f"{escape(str(deployment['promoted_from'])[:12])}"
            f" at {escape(str(deployment['time']))}</title>{line}"
            f'<path d="M{x - 7:.1f} 4 L{x + 7:.1f} 4 L{x:.1f} 18 Z" fill="{ROLLBACK_COLOUR}"/></g>'
        )
    for row in attempts:
        moment = parse_rfc3339(row["time"])
        if moment is None:
            continue
        colour = OUTCOME_COLOURS.get(row["outcome"], "#000")
        ring = f' stroke="{ROLLBACK_COLOUR}" stroke-width="2"' if row.get("rollback_target") else ""
        tip = f"{row['commit'][:12]} {row['outcome']} {row['time']}"
        parts.append(
            f'<circle class="attempt {escape(row["outcome"])}" cx="{scale.x(moment):.1f}" '
            f'cy="{lanes.get(row["outcome"], top)}" r="6" fill="{colour}"{ring}>'
            f"<title>{escape(tip)}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def lead_chart(
    attempts: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], scale: _Scale
) -> str:
    """A bar per promotion at its time, as tall as its lead time; median and p90 lines."""
    height, top, bottom = 190, 20, 22
    points = [
        (parse_rfc3339(r["promoted_at"]), float(r["lead_time_s"]), r)
        for r in attempts
        if r.get("promoted_at") and r.get("lead_time_s") is not None
    ]
    longest = max([lead for _, lead, _ in points] + [1.0])
    plot = height - top - bottom

    def y(value: float) -> float:
        return height - bottom - max(0.0, value) / longest * plot

    parts = [
        f'<svg id="leadtime" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="lead time">'
    ]
    parts += scale.ticks(height, top)
    parts.append(
        f'<text x="{LEFT - 10}" y="{top + 8}" text-anchor="end">{duration(longest)}</text>'
    )
    parts.append(f'<text x="{LEFT - 10}" y="{height - bottom}" text-anchor="end">0</text>')
    for moment, lead, row in points:
        if moment is None:
            continue
        x = scale.x(moment)
        parts.append(
            f'<rect class="lead" x="{x - 3:.1f}" y="{y(lead):.1f}" width="6" '
            f'height="{height - bottom - y(lead):.1f}" fill="{LEAD_COLOUR}">'
            f"<title>{escape(row['commit'][:12])}: {duration(lead)}</title></rect>"
        )
    label_x = float(WIDTH - RIGHT)
    for key, dash in (("lead_time_median_s", "6 3"), ("lead_time_p90_s", "2 3")):
        value = summary.get(key)
        if value is None:
            continue
        name = "median" if "median" in key else "p90"
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#202124" stroke-dasharray="{dash}"/>'
            f'<text x="{label_x:.0f}" y="{y(value) - 3:.1f}" text-anchor="end">'
            f"{name} {duration(value)}</text>"
        )
        label_x -= 130  # the next label never sits on this one
    parts.append("</svg>")
    return "".join(parts)


def _link(text: str, url: str | None) -> str:
    return f'<a href="{escape(url)}">{escape(text)}</a>' if url else escape(text)


def table(
    attempts: Sequence[Mapping[str, Any]], trigger: Mapping[str, str | None] | None = None
) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Time (UTC)", "Commit", "Source", "Build", "Images", "Outcome", "Rollback",
                  "To production", "Detail", "Roll back to it")
    )  # fmt: skip
    rows = []
    for r in attempts:
        rollback = []
        if r.get("rollback_target"):
            rollback.append("rolled back to")
        if r.get("rolled_back"):
            rollback.append("rolled back from")
        colour = OUTCOME_COLOURS.get(r["outcome"], "#000")
        source = r.get("source_commit") or "-"
        if r.get("source_repo"):
            source = f"{r['source_repo']}@{source[:12]}"
        cells = [
            escape(r["time"].replace("T", " ").removesuffix("Z")),
            _link(r["commit"][:12], r.get("commit_url")),
            escape(source[:60]),
            _link(r.get("build_id") or "-", r.get("build_url")),
            escape(" ".join(r.get("images") or []) or "-"),
            f'<span class="pill" style="background:{colour}">{escape(r["outcome"])}</span>',
            escape(", ".join(rollback) or "-"),
            escape(duration(r.get("candidate_to_production_s"))),
        ]
        body = "".join(f"<td>{c}</td>" for c in cells)
        detail = f'<td class="detail">{escape(r.get("detail") or "")}</td>'
        command = rollback_command(r["commit"], trigger) if r["outcome"] == "promoted" else ""
        back = (
            f'<td class="rollback"><code>{escape(command)}</code></td>' if command else "<td>-</td>"
        )
        rows.append(f'<tr class="{escape(r["outcome"])}">{body}{detail}{back}</tr>')
    return (
        f'<div class="scroll"><table id="attempts"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def render_html(
    attempts: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    deployments: Sequence[Mapping[str, Any]],
    *,
    title: str,
    trigger: Mapping[str, str | None] | None = None,
) -> str:
    """The whole page. ``attempts`` newest first, as ``gitops-history --format json`` has them."""
    period = summary["period"]
    start = parse_rfc3339(period["since"]) or 0.0
    end = parse_rfc3339(period["until"]) or start
    scale = _Scale(start, end)
    shown = [
        d
        for d in deployments
        if (moment := parse_rfc3339(d.get("time"))) is not None and start <= moment <= end
    ]
    legend = (
        "".join(
            f'<span><i class="sw" style="background:{colour}"></i>{escape(name)}</span>'
            for name, colour in OUTCOME_COLOURS.items()
        )
        + f'<span><i class="sw" style="background:{ROLLBACK_COLOUR}"></i>rollback</span>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Deployment history: {escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<style>{_CSS}</style></head><body>"
        f'<h1>Deployment history</h1><p class="sub">{escape(title)} · '
        f"{escape(period['since'])} .. {escape(period['until'])} · "
        f"{summary['attempts']} attempts</p>"
        f'<section class="cards" id="glance">{glance(attempts, summary)}</section>'
        f'<section class="cards" id="figures">{cards(summary)}</section>'
        f'<h2>Attempts over time</h2><div class="legend">{legend}</div>'
        f"{timeline(attempts, shown, scale)}"
        f"<h2>Lead time to production</h2>{lead_chart(attempts, summary, scale)}"
        f"<h2>Attempts</h2>{table(attempts, trigger)}"
        "</body></html>\n"
    )


CHAIN_COLOURS = {**OUTCOME_COLOURS, "not-reached": "#dadce0"}


def _chain_cell(cell: Mapping[str, Any]) -> str:
    outcome = str(cell.get("outcome"))
    colour = CHAIN_COLOURS.get(outcome, "#9aa0a6")
    when = str(cell.get("promoted_at") or "")[5:16].replace("T", " ")
    marks = [m for m, on in (("rolled back", cell.get("rolled_back")),
                             ("rollback target", cell.get("rollback_target"))) if on]  # fmt: skip
    label = "-" if outcome == "not-reached" else outcome
    detail = " · ".join(filter(None, [when, *marks]))
    return (
        f'<td class="env"><i class="sw" style="background:{colour}"></i>{escape(label)}'
        + (f'<div class="n">{escape(detail)}</div>' if detail else "")
        + "</td>"
    )


def render_chain_html(
    chain: Sequence[str],
    releases: Sequence[Mapping[str, Any]],
    summaries: Mapping[str, Mapping[str, Any]],
    *,
    title: str,
) -> str:
    """The chain at a glance: one row per release, one column per environment, then
    each environment's figures (its own deployments, rollbacks and failures)."""
    head = "".join(f"<th>{escape(env)}</th>" for env in chain)
    body = "".join(
        f"<tr><td><code>{escape(str(r['commit'])[:12])}</code></td>"
        f"<td>{escape(str(r['time']))}</td>"
        + "".join(_chain_cell(r["environments"][env]) for env in chain)
        + f"<td>{escape(str(r['subject']))}</td></tr>"
        for r in releases
    )
    figures = "".join(
        f"<h2>{escape(env)}</h2>"
        f'<section class="cards" id="figures-{escape(env)}">{cards(summaries[env], env)}</section>'
        for env in chain
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Deployment chain: {escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        f"<style>{_CSS}</style></head><body>"
        f'<h1>Deployment chain</h1><p class="sub">{escape(title)} · '
        f"{escape(' → '.join(chain))} · {len(releases)} releases</p>"
        f'<table id="chain"><thead><tr><th>release</th><th>time</th>{head}'
        f"<th>subject</th></tr></thead><tbody>{body}</tbody></table>"
        f"{figures}</body></html>\n"
    )
