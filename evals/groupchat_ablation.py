"""The group-chat ablation runner: one run of the T1/T2 story per switch, then the probes; one JSON line per
switch, a markdown report and plots.

Switches: `baseline` (nothing off) and each of `Ablations` (private_chat, meeting, group_chat, reflection,
think), each on the dislike variant of the story (`evals/groupchat.py`). Every switch is a run (thread
`groupchat-eval-<switch>`) checkpointed in `<out>/checkpoints.sqlite`, so an interrupted run resumes from its
last checkpoint, and a run that finished before its probes were asked goes straight to the probes. A switch
is written to `<out>/results.jsonl` when it is scored; a rerun skips it. A switch that failed (a model error)
is written unscored with its error and retried on the next run. `<out>/run.json` holds the settings that
decide the numbers; a rerun with other settings is refused rather than mixing results.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from rich.console import Console

from sopgraph.evals.groupchat import (
    default_observed,
    dialogue,
    dialogue_entropy,
    dislike_of_run,
    dislike_variant,
    hygiene_of,
)
from sopgraph.evals.groupchat_probes import (
    KIND,
    PROBE_IDS,
    ProbeRow,
    accuracy,
    accuracy_by,
    ask_probes,
    constant_baseline,
    families,
    random_baseline,
)
from sopgraph.evals.harness import (
    JsonRecord,
    ResultsFile,
    check_settings,
    describe_error,
    pct,
    pyplot,
    safe_name,
    save_report,
)
from sopgraph.graphs import runner
from sopgraph.graphs.groupchat import groupchat_input
from sopgraph.graphs.runner import open_checkpointer
from sopgraph.state.context import Context, default_model
from sopgraph.state.groupchat import Ablations, Scenario
from sopgraph.state.usage import UsageRecord, UsageTotals

GRAPH = "groupchat"
BASELINE = "baseline"
SWITCHES = (BASELINE, *(name.removeprefix("no_") for name in Ablations.model_fields))

Progress = Callable[[str, str], None]
StoryReport = Callable[..., Any]
"""`write_report(values, path, *, run_id, model)` of a switch's run: the CLI hands in its HTML story report
(graphs/cli/groupchat_report.py), which this layer does not import."""
"""Called with (switch, what it is doing now)."""


class GroupChatEvalError(RuntimeError):
    """A switch could not be scored (a paused run); one line, recorded in results.jsonl."""


def parse_switches(text: str) -> list[str]:
    """`all`, `none` (the baseline alone) or comma-separated ablation names; the baseline always runs first."""
    text = text.strip().lower()
    if text == "all":
        return list(SWITCHES)
    if text in ("none", "", BASELINE):
        return [BASELINE]
    names = [n for n in text.split(",") if n.strip() and n.strip() != BASELINE]
    chosen = set(Ablations.of(names).names())  # ValueError names an unknown switch
    return [BASELINE, *(s for s in SWITCHES[1:] if f"no_{s}" in chosen)]


def ablations_for(switch: str) -> Ablations:
    return Ablations() if switch == BASELINE else Ablations.of([switch])


@dataclass(frozen=True)
class GroupChatEvalSettings:
    scenario: str
    """As given: a packaged story's name or a YAML path."""
    story: Scenario
    """The dislike variant actually run (rounds and seed applied)."""
    observed: str
    model: str
    probes: bool = True

    @classmethod
    def build(
        cls,
        scenario: str,
        observed: str | None = None,
        model: str | None = None,
        rounds: int | None = None,
        seed: int | None = None,
        probes: bool = True,
    ) -> GroupChatEvalSettings:
        """ScenarioError when the story cannot be loaded or has no such character."""
        story = groupchat_input(scenario, rounds=rounds, seed=seed)["scenario"]
        observed = observed or default_observed(story)
        return cls(scenario, dislike_variant(story, observed), observed, model or default_model(), probes)

    def context(self) -> Context:
        return Context(model=self.model, seed=self.story.settings.seed)

    def identity(self) -> dict[str, Any]:
        """What must match for results to be resumed or compared."""
        digest = hashlib.sha256(self.story.model_dump_json().encode()).hexdigest()[:16]
        ctx = self.context()
        return {
            "benchmark": "groupchat",
            "scenario": self.scenario,
            "story_sha256": digest,
            "observed": self.observed,
            "rounds": self.story.settings.rounds,
            "seed": self.story.settings.seed,
            "model": self.model,
            "temperature": ctx.temperature,
            "probes": self.probes,
        }


@dataclass
class SwitchResult(JsonRecord):
    """One switch's line in results.jsonl."""

    switch: str
    scored: bool
    scenario: str = ""
    thread_id: str = ""
    ablations: list[str] = field(default_factory=list)
    observed: str = ""
    t1: bool | None = None
    t2: bool | None = None
    affinity: list[list[float]] = field(default_factory=list)
    """[round, mean score of the others toward the observed character]; round 0 is the start."""
    final: dict[str, int] = field(default_factory=dict)
    falling_steps: int = 0
    steps: int = 0
    probe_accuracy: float | None = None
    """Exact-match share over every (character, probe) asked; None without probes."""
    probe_constant_baseline: float | None = None
    """Always one answer per type (one number, one name, yes or no), the best such choice."""
    probe_random_baseline: float | None = None
    """A uniform guess among each question's legal answers."""
    probe_families: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per probe: kind, n, accuracy, constant (best single answer) and random baselines."""
    probe_accuracy_by_probe: dict[str, float] = field(default_factory=dict)
    probe_accuracy_by_character: dict[str, float] = field(default_factory=dict)
    probes: list[dict[str, Any]] = field(default_factory=list)
    entropy: dict[str, float] = field(default_factory=dict)
    """2-gram entropy of the dialogue: word_bits, word_nats, char_bits, char_nats, with lines and words."""
    echo_rate: float | None = None
    """Share of spoken turns (silences included) whose recorded line still echoes its prompt."""
    leak_rate: float | None = None
    """... that carry instruction wording (a word limit, a stage direction, a template fragment)."""
    echo_leak_rate: float | None = None
    """... that do either (the issue's target: below 2%)."""
    refusal_rate: float | None = None
    """... whose answer was a refusal (also when it was replaced by silence)."""
    non_answer_rate: float | None = None
    """... whose answer said it had nothing to say ("I don't know what to say"), also when silenced."""
    narration_rate: float | None = None
    """... whose answer narrated ("Aria Voss says,", the speaker in the third person), also when silenced."""
    self_repeat_rate: float | None = None
    copy_rate: float | None = None
    """... that nearly duplicate the speaker's own earlier line / another speaker's line it heard."""
    silence_rate: float | None = None
    distinct_2: float | None = None
    """Unique word 2-grams over all word 2-grams of the spoken lines."""
    hygiene: dict[str, Any] = field(default_factory=dict)
    """The counts behind the rates, the first answers' defects, re-asks and clean-ups."""
    winner: str | None = None
    clamped: int = 0
    run_calls: int = 0
    probe_calls: int = 0
    model_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    model_seconds: float = 0.0
    """Summed model latency of the whole run and the probes (kept in the run's ledger across resumes)."""
    seconds: float = 0.0
    """Wall time of this switch in the invocation that scored it."""
    resumed: bool = False
    """The run was continued from a checkpoint left by an earlier invocation."""
    error: str | None = None


def thread_for(switch: str) -> str:
    return f"{GRAPH}-eval-{safe_name(switch)}"


class _LogFile(io.TextIOBase):
    """Where a run's node-by-node console output goes: the switch's log file, each line also reported."""

    def __init__(self, path: Path, on_line: Callable[[str], None]) -> None:
        self._fh = path.open("a", encoding="utf-8")
        self._on_line = on_line

    def write(self, text: str) -> int:
        self._fh.write(text)
        for line in text.splitlines():
            if line.strip():
                self._on_line(line.strip())
        return len(text)

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        super().close()  # flushes first
        self._fh.close()


def simulate(
    saver: Any, settings: GroupChatEvalSettings, switch: str, console: Console, progress: Progress
) -> tuple[dict[str, Any], bool]:
    """The switch's finished run: started, resumed from its checkpoint, or read back when already finished.
    Returns its final state values and whether an earlier invocation had begun it."""
    thread_id = thread_for(switch)
    graph = runner.compile_graph(GRAPH, saver)
    snapshot = graph.get_state(runner.run_config(thread_id))
    if not snapshot.values:
        progress(switch, "simulating")
        payload = groupchat_input(settings.story, ablate=ablations_for(switch))
        outcome = runner.start_run(
            GRAPH, dict(payload), saver, settings.context(), thread_id=thread_id, console=console
        )
    elif not runner.finished(snapshot):
        progress(switch, "resuming the run from its checkpoint")
        outcome = runner.resume_run(saver, thread_id, console=console)
    else:
        return dict(snapshot.values), True
    if outcome.status != "done":
        why = "; ".join(str(i.get("message", i) if isinstance(i, dict) else i) for i in outcome.interrupts)
        raise GroupChatEvalError(f"run {thread_id} paused: {why or 'waiting'}")
    return outcome.values, bool(snapshot.values)


def score(
    switch: str,
    values: dict[str, Any],
    observed: str,
    rows: Sequence[ProbeRow],
    probe_usage: Sequence[UsageRecord],
    scenario: str = "",
) -> SwitchResult:
    """A switch's numbers from its run's final state and its probe answers."""
    run = UsageTotals.of(values.get("usage") or [])
    probing = UsageTotals.of(probe_usage)
    outcome = values.get("outcome")
    dislike = dislike_of_run(values, observed)
    clean = hygiene_of(values.get("pool") or [])
    return SwitchResult(
        switch=switch,
        scored=True,
        scenario=scenario,
        thread_id=thread_for(switch),
        ablations=ablations_for(switch).names(),
        observed=observed,
        t1=dislike.t1,
        t2=dislike.t2,
        affinity=[[r, round(a, 3)] for r, a in dislike.affinity],
        final=dislike.final,
        falling_steps=dislike.falling_steps,
        steps=dislike.steps,
        probe_accuracy=accuracy(rows),
        probe_constant_baseline=constant_baseline(rows),
        probe_random_baseline=random_baseline(rows),
        probe_families=families(rows),
        probe_accuracy_by_probe=accuracy_by(rows, "probe"),
        probe_accuracy_by_character=accuracy_by(rows, "character"),
        probes=[r.to_dict() for r in rows],
        entropy={k: round(v, 4) for k, v in asdict(dialogue_entropy(dialogue(values.get("pool") or []))).items()},
        **clean.rates(),
        hygiene=clean.to_dict(),
        winner=getattr(outcome, "winner", None),
        clamped=len(values.get("warnings") or []),
        run_calls=run.calls,
        probe_calls=probing.calls,
        model_calls=run.calls + probing.calls,
        tokens_in=run.input_tokens + probing.input_tokens,
        tokens_out=run.output_tokens + probing.output_tokens,
        model_seconds=round(run.latency_s + probing.latency_s, 2),
    )


def run_switch(
    saver: Any,
    settings: GroupChatEvalSettings,
    switch: str,
    out_dir: Path,
    progress: Progress,
    story_report: StoryReport | None = None,
) -> SwitchResult:
    """Run (or resume) and probe one switch, writing its story report when given one; a failure becomes an
    unscored record with its error."""
    start = time.perf_counter()
    log = _LogFile(out_dir / f"{safe_name(switch)}.log", lambda line: progress(switch, f"simulating · {line}"))
    try:
        console = Console(file=cast(IO[str], log), width=160, color_system=None)
        values, resumed = simulate(saver, settings, switch, console, progress)
        if story_report is not None:
            path = out_dir / f"{safe_name(switch)}.html"
            story_report(values, path, run_id=thread_for(switch), model=settings.model)
        rows: list[ProbeRow] = []
        usage: list[UsageRecord] = []
        if settings.probes:
            progress(switch, "probing")
            probed = ask_probes(values, settings.context(), lambda c, p: progress(switch, f"probing {c}: {p}"))
            rows, usage = probed.rows, probed.usage
        result = score(switch, values, settings.observed, rows, usage, settings.scenario)
        result.resumed = resumed
    except Exception as exc:  # noqa: BLE001 - recorded unscored; the next run resumes it from its checkpoint
        result = SwitchResult(
            switch, scored=False, scenario=settings.scenario, thread_id=thread_for(switch), error=describe_error(exc)
        )
    finally:
        log.close()
    result.seconds = round(time.perf_counter() - start, 2)
    return result


@dataclass
class EvalOutcome:
    records: list[SwitchResult]
    """Every switch scored in the output directory, in switch order (earlier invocations' too)."""
    failed: list[SwitchResult]
    """Switches of this invocation that could not be scored."""
    newly_scored: int
    report: Path


def run_groupchat_eval(
    settings: GroupChatEvalSettings,
    switches: Sequence[str],
    out_dir: Path,
    progress: Progress | None = None,
    story_report: StoryReport | None = None,
) -> EvalOutcome:
    """Score every switch not yet scored in out_dir, then write the report over all scored switches; with
    `story_report`, each switch's story as `<switch>.html` too. SettingsMismatch when out_dir holds results
    made with other settings."""
    report = progress or (lambda switch, what: None)
    check_settings(out_dir, settings)
    store: ResultsFile[SwitchResult] = ResultsFile(out_dir / "results.jsonl", SwitchResult, key="switch")
    records = store.scored()
    failed: list[SwitchResult] = []
    newly = 0
    with open_checkpointer(str(out_dir / "checkpoints.sqlite")) as saver:
        for switch in switches:
            if switch in records:
                report(switch, "scored earlier")
                continue
            result = run_switch(saver, settings, switch, out_dir, report, story_report)
            store.append(result)
            if result.scored:
                records[switch], newly = result, newly + 1
                report(switch, "scored")
            else:
                failed.append(result)
                report(switch, f"failed: {result.error}")
    ordered = [records[s] for s in SWITCHES if s in records]
    return EvalOutcome(ordered, failed, newly, write_report(settings, ordered, out_dir))


# -------------------------------------------------------------------------------------------- report


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    align = ["---", *("---:" for _ in headers[1:])]
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def render_markdown(
    settings: GroupChatEvalSettings, records: Sequence[SwitchResult], stories: Sequence[str] = ()
) -> str:
    """`stories`: the switches whose story report (`<switch>.html`) is in the output directory."""
    story, observed = settings.story, settings.observed
    name = story.name_of(observed)
    lines = [
        f"# Group chat: dislike test, probes and dialogue entropy of `{settings.model}`",
        "",
        f"Story: **{story.title}** (`{settings.scenario}`), {story.settings.rounds} rounds, seed "
        f"{story.settings.seed}. Observed character: **{name} ({observed})**; every other character is told in "
        f"its private scratch to dislike {name}.",
        "",
        *_table(
            [
                "switch",
                "T1",
                "falling steps",
                "T2",
                f"final scores toward {observed}",
                "probe accuracy / constant / random",
                "echo / leak / refusal / non-answer / narration / self-repeat / silence",
                "distinct-2",
                "H₂ words (bits / nats)",
                "H₂ chars (bits / nats)",
                "lines",
                "model calls",
                "tokens in / out",
                "seconds",
            ],
            [
                [
                    r.switch,
                    _yes(r.t1),
                    f"{r.falling_steps} / {r.steps}",
                    _yes(r.t2),
                    ", ".join(f"{c} {s}" for c, s in r.final.items()) or "n/a",
                    _against(r.probe_accuracy, r.probe_constant_baseline, r.probe_random_baseline),
                    " / ".join(
                        pct(v)
                        for v in (
                            r.echo_rate,
                            r.leak_rate,
                            r.refusal_rate,
                            r.non_answer_rate,
                            r.narration_rate,
                            r.self_repeat_rate,
                            r.silence_rate,
                        )
                    ),
                    "n/a" if r.distinct_2 is None else f"{r.distinct_2:.3f}",
                    f"{r.entropy.get('word_bits', 0):.3f} / {r.entropy.get('word_nats', 0):.3f}",
                    f"{r.entropy.get('char_bits', 0):.3f} / {r.entropy.get('char_nats', 0):.3f}",
                    int(r.entropy.get("lines", 0)),
                    r.model_calls,
                    f"{r.tokens_in} / {r.tokens_out}",
                    f"{r.seconds:.1f}" + (" (resumed)" if r.resumed else ""),
                ]
                for r in records
            ],
        ),
        "",
        "## Reply hygiene",
        "",
        "Share of spoken turns (silences included). The first answers' defects are counted before any re-ask "
        "or clean-up; the rates are those of the lines as recorded (a repaired line is counted as it was spoken, "
        "after its echoed or leaked words were cut out).",
        "",
        *_table(
            [
                "switch",
                "turns",
                "echo",
                "leak",
                "refusal",
                "non-answer",
                "narration",
                "self-repeat",
                "copy",
                "silence",
                "distinct-2",
                "first answers: defects",
                "re-asked / cleaned / repaired",
            ],
            [
                [
                    r.switch,
                    r.hygiene.get("turns", 0),
                    pct(r.echo_rate),
                    pct(r.leak_rate),
                    pct(r.refusal_rate),
                    pct(r.non_answer_rate),
                    pct(r.narration_rate),
                    pct(r.self_repeat_rate),
                    pct(r.copy_rate),
                    pct(r.silence_rate),
                    "n/a" if r.distinct_2 is None else f"{r.distinct_2:.3f}",
                    ", ".join(f"{k} {v}" for k, v in sorted((r.hygiene.get("first_defects") or {}).items())) or "none",
                    f"{r.hygiene.get('reasked', 0)} / {r.hygiene.get('cleaned', 0)} / {r.hygiene.get('repaired', 0)}",
                ]
                for r in records
            ],
        ),
        "",
        f"## Affinity toward {name} by round",
        "",
        f"The mean score (0–100, 50 neutral) of the other characters toward {observed}; round 0 is the start.",
        "",
    ]
    rounds = sorted({int(r) for rec in records for r, _ in rec.affinity})
    lines += _table(
        ["switch", *(f"round {r}" for r in rounds)],
        [[rec.switch, *(_at(rec, r) for r in rounds)] for rec in records],
    )
    lines += ["", "![affinity](affinity.png)", ""]
    if any(r.probes for r in records):
        lines += [
            "## Probes against their baselines",
            "",
            "Each cell: accuracy / the best constant answer's / a uniform random guess's, over the questions "
            "asked (constant: per family the most frequent truth; overall one answer per type).",
            "",
        ]
        lines += _table(
            ["probe", "type", *(r.switch for r in records)],
            [
                [
                    "**all**",
                    "",
                    *(_against(r.probe_accuracy, r.probe_constant_baseline, r.probe_random_baseline) for r in records),
                ],
                *(
                    [p, KIND[p], *(_family(r, p) for r in records)]
                    for p in PROBE_IDS
                    if any(p in r.probe_families for r in records)
                ),
            ],
        )
        lines += ["", "![probe accuracy](probes.png)", "", "## Probe accuracy by character", ""]
        lines += _table(
            ["character", *(r.switch for r in records)],
            [[c, *(pct(r.probe_accuracy_by_character.get(c)) for r in records)] for c in story.ids],
        )
        lines.append("")
    lines += [
        "## Definitions",
        "",
        "- T1: the affinity falls strictly from each point to the next (start, then after each round).",
        f"- T2: every other character's last score toward {observed} is below 50 (neutral).",
        "- Probes: one question per model call, asked of each character with its own view of the finished run, "
        "the answer constrained to its type (a number in the probe's range, a name from the cast, yes/no); "
        "exact match against the ground truth from the state (see evals/groupchat_probes.py).",
        "- Hygiene: echo (a run of 6+ words of the prompt), leak (instruction wording), refusal, non-answer "
        "(says it has nothing to say), narration (stage directions, the speaker in the third person), self-repeat "
        "and copy (3-gram near-duplicates of the speaker's own or another's earlier line); see "
        "nodes/groupchat/hygiene.py.",
        "- H₂: Shannon entropy of the 2-gram distribution of the spoken lines (private chats, meetings, group "
        "chat), words lower-cased without punctuation, characters with whitespace collapsed.",
        "- seconds: wall time of the invocation that scored the switch; model calls and tokens cover the whole "
        "run and its probes.",
        *(
            [
                "- Each switch's story, as `sopgraph groupchat` reports it (transcript, heatmaps, beliefs, votes): "
                + ", ".join(f"[{switch}]({safe_name(switch)}.html)" for switch in stories)
            ]
            if stories
            else []
        ),
        "- settings: " + ", ".join(f"{k}={v}" for k, v in settings.identity().items()),
        "",
    ]
    return "\n".join(lines)


def _against(value: float | None, constant: float | None, random: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{pct(value)} / {pct(constant)} / {pct(random)}"


def _family(record: SwitchResult, probe: str) -> str:
    fam = record.probe_families.get(probe)
    if not fam:
        return "n/a"
    return _against(fam["accuracy"], fam["constant"], fam["random"]) + f" (n={fam['n']})"


def _at(record: SwitchResult, round_: int) -> str:
    value = next((a for r, a in record.affinity if int(r) == round_), None)
    return "n/a" if value is None else f"{value:.1f}"


def plot_affinity(records: Sequence[SwitchResult], observed: str, path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    for rec in records:
        if rec.affinity:
            ax.plot([r for r, _ in rec.affinity], [a for _, a in rec.affinity], marker="o", label=rec.switch)
    ax.axhline(50, color="#999", linestyle=":", linewidth=1)
    ax.set_ylim(0, 100)
    ax.set_xlabel("round (0: start)")
    ax.set_ylabel(f"mean score toward {observed}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_probes(records: Sequence[SwitchResult], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=120)
    width = 0.8 / max(1, len(records))
    for i, rec in enumerate(records):
        xs = [j + i * width for j in range(len(PROBE_IDS))]
        ax.bar(xs, [100 * rec.probe_accuracy_by_probe.get(p, 0.0) for p in PROBE_IDS], width, label=rec.switch)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(PROBE_IDS))], PROBE_IDS, rotation=30, fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_ylabel("exact match (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def write_report(settings: GroupChatEvalSettings, records: Sequence[SwitchResult], out_dir: Path) -> Path:
    """summary.md with affinity.png and probes.png, and summary.json, in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stories = [r.switch for r in records if r.scored and (out_dir / f"{safe_name(r.switch)}.html").is_file()]
    text = render_markdown(settings, records, stories)
    if not records or not plot_affinity(records, settings.observed, out_dir / "affinity.png"):
        text = text.replace("![affinity](affinity.png)\n", "")
    if not any(r.probes for r in records) or not plot_probes(records, out_dir / "probes.png"):
        text = text.replace("![probe accuracy](probes.png)\n", "")
    data = {"settings": settings.identity(), "switches": [asdict(r) for r in records]}
    return save_report(out_dir, text, data)
