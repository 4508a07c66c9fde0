"""A self-contained HTML report of a group-chat run: transcript per round and stage, relationship heatmaps,
belief trajectories, votes and the winner. Figures are matplotlib PNGs embedded as base64, so the file can
be mailed or archived alone. Built from a run's final state values (no model, no network).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sopgraph.evals.groupchat import timeline
from sopgraph.nodes.groupchat import hygiene
from sopgraph.nodes.groupchat.prompts import INSTRUCTIONS, SILENT
from sopgraph.state.groupchat import (
    Ablations,
    Ballot,
    ClampWarning,
    Outcome,
    PersonaSnapshot,
    Scenario,
    Stage,
    VoteRule,
)
from sopgraph.state.pool import Message, Visibility
from sopgraph.state.usage import totals_by

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left;
vertical-align:top} th{background:#f4f4f4} .line{margin:.25em 0} .who{font-weight:600}
.badge{font-size:.75em;padding:.1em .4em;border-radius:.3em;margin-left:.4em;background:#eee;color:#555}
.private{background:#fde2e2;color:#922} .confidential{background:#fff1cc;color:#850}
.public{background:#e1f3e1;color:#262}
.note{color:#666;font-size:.9em} .winner{font-size:1.3em;background:#eef6ff;padding:.6em 1em;border-radius:.4em}
details{margin:.4em 0} img{max-width:100%} .conv{border-left:3px solid #ddd;padding-left:.8em;margin:.6em 0}
"""

SPOKEN = {Stage.PRIVATE_CHAT.value, Stage.MEETING.value, Stage.GROUP_CHAT.value}
BADGE = {
    Visibility.PARTICIPANTS: ("private", "private: only the two of them"),
    Visibility.EXISTENCE_PUBLIC: ("confidential", "confidential: others know only that they met"),
    Visibility.AFTER_SUBROUND: ("public", "public once the sub-round closed"),
    Visibility.PUBLIC: ("public", "public"),
}


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the group-chat report needs matplotlib: pip install matplotlib") from exc
    return Figure(figsize=(width, height), layout="constrained")


def heatmaps(scenario: Scenario, points: Sequence[tuple[str, Mapping[str, PersonaSnapshot]]]) -> str:
    ids = scenario.ids
    cols = len(points)
    fig = _figure(max(3.2 * cols, 4.0), 3.6)
    axes = fig.subplots(1, cols, squeeze=False)[0]
    image = None
    for ax, (label, snaps) in zip(axes, points, strict=True):
        grid = [[float("nan")] * len(ids) for _ in ids]
        for i, a in enumerate(ids):
            for j, b in enumerate(ids):
                if a in snaps and b in snaps[a].relationships:
                    grid[i][j] = snaps[a].relationships[b]
        image = ax.imshow(grid, vmin=0, vmax=100, cmap="RdYlGn")
        ax.set_title(label, fontsize=9)
        ax.set_xticks(range(len(ids)), ids, rotation=45, fontsize=8)
        ax.set_yticks(range(len(ids)), ids, fontsize=8)
        for i in range(len(ids)):
            for j in range(len(ids)):
                if grid[i][j] == grid[i][j]:  # not NaN
                    ax.text(j, i, f"{grid[i][j]:.0f}", ha="center", va="center", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="feeling of row toward column")
    return _png(fig)


def trajectories(scenario: Scenario, points: Sequence[tuple[str, Mapping[str, PersonaSnapshot]]]) -> str:
    ids = scenario.ids
    cols = min(len(ids), 3)
    rows = (len(ids) + cols - 1) // cols
    fig = _figure(4.2 * cols, 2.9 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    labels = [label for label, _ in points]
    for ax, cid in zip(axes, ids, strict=False):
        beliefs = scenario.character(cid).beliefs
        for belief in beliefs:
            ys = [snaps[cid].beliefs.get(belief, float("nan")) if cid in snaps else float("nan") for _, snaps in points]
            ax.plot(range(len(labels)), ys, marker="o", label=belief[:40])
        ax.set_title(scenario.name_of(cid), fontsize=9)
        ax.set_ylim(0, 100)
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=20)
        ax.legend(fontsize=6, loc="best")
    for ax in axes[len(ids) :]:
        ax.set_visible(False)
    return _png(fig)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _line(scenario: Scenario, m: Message) -> str:
    css, title = BADGE[m.visibility]
    to = "" if m.to_everyone else f" → {_esc(', '.join(scenario.name_of(t) for t in m.send_to))}"
    return (
        f'<div class="line"><span class="who">{_esc(scenario.name_of(m.sender))}</span>{to}: {_esc(m.content)}'
        f'<span class="badge {css}" title="{_esc(title)}">{css}</span></div>'
    )


def _notes(scenario: Scenario, notes: Sequence[Message], title: str) -> str:
    if not notes:
        return ""
    items = "".join(
        f"<li><b>{_esc(scenario.name_of(m.sender))}</b> <span class='note'>({_esc(m.kind)})</span>: "
        f"{_esc(m.content)}</li>"
        for m in notes
    )
    return f"<details><summary>{_esc(title)} ({len(notes)})</summary><ul>{items}</ul></details>"


def transcript(scenario: Scenario, pool: Sequence[Message], rounds: int) -> str:
    out: list[str] = []
    for r in range(1, rounds + 1):
        out.append(f"<h3>Round {r}</h3>")
        in_round = [m for m in pool if m.round == r]
        plans = [m for m in in_round if m.stage == Stage.UPDATE.value and m.kind in {"plan", "snapshot"} and m.content]
        out.append(_notes(scenario, plans, "Update: plans and reflections (each private to its author)"))
        for stage, title in ((Stage.PRIVATE_CHAT, "Private chats"), (Stage.MEETING, "Confidential meetings")):
            said = [m for m in in_round if m.kind == stage.value]
            if not said:
                continue
            out.append(f"<h4>{title}</h4>")
            for index in sorted({m.sub_round for m in said}):
                convo = [m for m in said if m.sub_round == index]
                choice = next(
                    (m for m in in_round if m.kind == "choice" and m.stage == stage.value and m.sub_round == index),
                    None,
                )
                why = f" <span class='note'>({_esc(choice.content)})</span>" if choice else ""
                who = " and ".join(_esc(scenario.name_of(c)) for c in sorted(convo[0].participants()))
                lines = "".join(_line(scenario, m) for m in convo)
                out.append(f"<div class='conv'><b>{who}</b>{why}{lines}</div>")
        speeches = [m for m in in_round if m.kind == Stage.GROUP_CHAT.value]
        if speeches:
            out.append("<h4>Group chat</h4>")
            for sub in sorted({m.sub_round for m in speeches}):
                lines = "".join(_line(scenario, m) for m in speeches if m.sub_round == sub)
                out.append(f"<div class='conv'><b>sub-round {sub}</b>{lines}</div>")
        private = [m for m in in_round if m.kind in {"summary", "think"}]
        out.append(_notes(scenario, private, "Thoughts and summaries (each private to its author)"))
    return "".join(out)


def votes(scenario: Scenario, ballots: Sequence[Ballot], outcome: Outcome | None) -> str:
    rules = scenario.settings.vote_rules
    head = "".join(f"<th>{_esc(r.value)}</th>" for r in rules)
    rows = []
    for cid in scenario.ids:
        cells = []
        for rule in rules:
            b = next((b for b in ballots if b.voter == cid and b.rule == rule), None)
            if b is None or b.candidate is None:
                cells.append("<td class='note'>abstained</td>")
            else:
                flag = (
                    " <span class='badge private' title='clamped to a legal candidate'>clamped</span>"
                    if b.clamped
                    else ""
                )
                cells.append(f"<td><b>{_esc(b.candidate)}</b>{flag}<br><span class='note'>{_esc(b.reason)}</span></td>")
        rows.append(f"<tr><th>{_esc(scenario.name_of(cid))}</th>{''.join(cells)}</tr>")
    tallies = ""
    if outcome is not None:
        tally_rows = "".join(
            f"<tr><th>{_esc(c)}</th>"
            + "".join(f"<td>{outcome.tallies.get(r.value, {}).get(c, 0)}</td>" for r in rules)
            + "</tr>"
            for c in scenario.candidates()
        )
        tallies = f"<h3>Tallies</h3><table><tr><th>candidate</th>{head}</tr>{tally_rows}</table>"
    return f"<table><tr><th>voter</th>{head}</tr>{''.join(rows)}</table>{tallies}"


def _rule_text(rule: VoteRule) -> str:
    knows = "own knowledge" if rule.knowledge == "own" else "all knowledge"
    return f"{rule.value}: {knows}, {'may' if rule.self_vote else 'may not'} vote for oneself"


def render_report(values: Mapping[str, Any], *, run_id: str | None = None, model: str | None = None) -> str:
    """The report of a run's final state as one HTML document."""
    scenario = values["scenario"]
    scenario = scenario if isinstance(scenario, Scenario) else Scenario.model_validate(scenario)
    pool: list[Message] = list(values.get("pool") or [])
    ballots: list[Ballot] = list(values.get("ballots") or [])
    warnings: list[ClampWarning] = list(values.get("warnings") or [])
    outcome: Outcome | None = values.get("outcome")
    ablations = values.get("ablations") or Ablations()
    rounds = scenario.settings.rounds
    points = timeline(pool, rounds)

    winner = "not settled yet"
    if outcome is not None:
        name = f"{scenario.name_of(outcome.winner)} ({outcome.winner})" if outcome.winner else "nobody"
        winner = f"Winner: <b>{_esc(name)}</b> — {_esc(outcome.explanation)}"
    cast = "".join(
        f"<tr><td>{_esc(c.id)}</td><td>{_esc(c.name)}</td><td>{'yes' if c.principal else ''}</td>"
        f"<td>{scenario.holdings(c.id)}</td><td>{_esc(c.model or model or '')}</td><td>{_esc(c.background)}</td></tr>"
        for c in scenario.characters
    )
    usage_table = _table(
        ["character", "calls", "tokens in", "tokens out", "seconds"],
        [
            [role, t.calls, t.input_tokens, t.output_tokens, f"{t.latency_s:.1f}"]
            for role, t in totals_by(values.get("usage") or []).items()
        ],
    )
    clean = hygiene.measure(pool, SILENT, INSTRUCTIONS)
    counts = {d: getattr(clean, d) for d in hygiene.DEFECTS}
    hygiene_table = _table(
        [
            "spoken turns",
            *(f"{d} (final)" for d in hygiene.DEFECTS),
            "silence",
            "distinct-2",
            "first answers",
            "re-asked",
            "cleaned",
            "repaired (spoken)",
        ],
        [
            [
                clean.turns,
                *(f"{counts[d]} ({clean.rate(counts[d]):.1%})" for d in hygiene.DEFECTS),
                f"{clean.silent} ({clean.rate(clean.silent):.1%})",
                f"{clean.distinct_2:.3f}",
                ", ".join(f"{k} {v}" for k, v in sorted(clean.first_defects.items())) or "no defect",
                clean.reasked,
                clean.cleaned,
                clean.repaired,
            ]
        ],
    )
    clamps = _table(
        ["round", "where", "who", "action", "problem", "instead"],
        [[w.round, f"{w.stage} {w.at}", w.character, w.action, w.problem, w.fallback] for w in warnings],
    )
    figures = ""
    if points:
        figures = (
            f"<h2>Relationships</h2><p class='note'>Row toward column, 0–100, at the start and after each round.</p>"
            f"{heatmaps(scenario, points)}<h2>Beliefs</h2>{trajectories(scenario, points)}"
        )
    rules = "".join(f"<li>{_esc(_rule_text(r))}</li>" for r in scenario.settings.vote_rules)
    off = ", ".join(ablations.names()) if isinstance(ablations, Ablations) else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{_esc(scenario.title)}</title><style>{STYLE}</style></head><body>
<h1>{_esc(scenario.title)}</h1>
<p class="note">{_esc(run_id or "")} · {rounds} rounds · {scenario.settings.group_subrounds} group sub-rounds ·
seed {scenario.settings.seed}{" · ablations: " + _esc(off) if off else ""}</p>
<p class="winner">{winner}</p>
<p>{_esc(scenario.rules)}</p>
<h2>Cast</h2><table><tr><th>id</th><th>name</th><th>principal</th><th>holdings</th><th>model</th><th>background</th></tr>
{cast}</table>
<h2>Transcript</h2>{transcript(scenario, pool, rounds)}
{figures}
<h2>Votes</h2><p>{_esc(scenario.settings.winner.question)}</p><ul>{rules}</ul>{votes(scenario, ballots, outcome)}
<h2>Reply hygiene</h2><p class="note">Defects of the spoken lines: echo of the prompt, leaked instruction
wording, refusal, non-answer (says it has nothing to say), narration (stage directions, the speaker in the third
person), repeat of the speaker's own earlier line, copy of another's line. "first answers" counts them
before re-asks and clean-up; the other columns are the lines as recorded.</p>{hygiene_table}
<h2>Clamped answers</h2>{clamps if warnings else "<p>none</p>"}
<h2>Model usage</h2>{usage_table}
</body></html>
"""


def write_report(values: Mapping[str, Any], path: str | Path, **kw: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(values, **kw), encoding="utf-8")
    return path
