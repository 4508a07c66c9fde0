"""Group-chat evaluations on the scripted model: T1/T2, probes' ground truth and scoring, dialogue entropy, the
ablation runner's resumability, and `sopgraph eval groupchat` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from groupchat_script import Playbook, character_of, round_of, schema_name, scores

from sopgraph.evals.groupchat import (
    NEUTRAL,
    default_observed,
    dialogue,
    dialogue_entropy,
    dislike_of_run,
    dislike_test,
    dislike_variant,
    scores_toward,
)
from sopgraph.evals.groupchat_ablation import (
    SWITCHES,
    GroupChatEvalSettings,
    parse_switches,
    run_groupchat_eval,
)
from sopgraph.evals.groupchat_probes import (
    NAME,
    NUMBER,
    PROBE_IDS,
    PROBES,
    YESNO,
    Facts,
    Probe,
    ProbeRow,
    accuracy,
    accuracy_by,
    ask_probes,
    constant_baseline,
    families,
    ground_truth,
    random_baseline,
    received,
    situation,
)
from sopgraph.evals.harness import SettingsMismatch
from sopgraph.graphs.groupchat import build_groupchat_graph, groupchat_input
from sopgraph.nodes.groupchat.prompts import SILENT, system_prompt
from sopgraph.nodes.groupchat.stages import snapshot
from sopgraph.nodes.scripted import ScriptedChatModel, ScriptedFault, ScriptedRequest
from sopgraph.scenarios import ScenarioError, load_scenario, parse_scenario
from sopgraph.state.context import Context
from sopgraph.state.groupchat import (
    Persona,
    Relationship,
    Scenario,
    Stage,
)
from sopgraph.state.pool import Message, Visibility

Scripted = tuple[str, ScriptedChatModel]
OBSERVED = "aria"


def philosophers(rounds: int = 2, drop: str | None = None) -> Scenario:
    """The packaged four-character story (aria, bruno, chen principals; lina listens), optionally without one."""
    data = load_scenario("philosophers").model_dump(mode="json")
    data["settings"] |= {"rounds": rounds, "belief_step": 7, "relationship_step": 9}
    data["characters"] = [c for c in data["characters"] if c["id"] != drop]
    return parse_scenario(data)


def finished(scripted: Scripted, scenario: Scenario, playbook: Playbook | None = None, **kw: Any) -> dict[str, Any]:
    """A whole run's final state values."""
    name, model = scripted
    model.script = playbook or Playbook()
    graph = build_groupchat_graph().compile()
    return graph.invoke(groupchat_input(scenario, **kw), context=Context(model=name))


def snapshots(scores_by_point: list[dict[str, int]], rounds: int) -> list[Message]:
    """Snapshot messages as a run publishes them: setup, then the update of each next round, then the final
    update; each point gives every other character's score toward aria."""
    where = [(0, Stage.SETUP), *((r + 1, Stage.UPDATE) for r in range(1, rounds)), (rounds, Stage.FINAL_UPDATE)]
    pool = []
    for (round_, stage), point in zip(where, scores_by_point, strict=False):
        for cid, score in point.items():
            persona = Persona(id=cid, beliefs={"b": 50}, relationships={OBSERVED: Relationship(score=score)})
            pool.append(snapshot(persona, round_, stage))
    # Round 1's update snapshot comes before any reflection: never a point of the timeline.
    pool.append(
        snapshot(Persona(id="bruno", beliefs={}, relationships={OBSERVED: Relationship(score=0)}), 1, Stage.UPDATE)
    )
    return pool


def lowering(observed: str, step: int) -> Playbook:
    """Every other character lowers its feeling toward `observed` by `step` at each reflection."""

    def reflect(request: ScriptedRequest, cid: str) -> dict[str, Any]:
        _, feelings = scores(request)
        rel = [] if cid == observed else [{"character": observed, "score": feelings[observed] - step}]
        return {"reflection": f"{cid} reflects", "relationships": rel, "beliefs": []}

    return Playbook().on("Reflect", reflect)


# -- T1/T2 --------------------------------------------------------------------------------------------------


def test_t1_t2_pass_when_every_score_falls_below_neutral() -> None:
    story = philosophers()
    pool = snapshots([{"bruno": 50, "chen": 60, "lina": 40}, {"bruno": 45, "chen": 50, "lina": 35},
                      {"bruno": 40, "chen": 45, "lina": 30}], rounds=2)  # fmt: skip
    points = scores_toward(pool, story, OBSERVED)
    assert [r for r, _ in points] == [0, 1, 2]
    result = dislike_test(points, OBSERVED, story.others(OBSERVED))
    assert result.affinity == [(0, 50.0), (1, pytest.approx(130 / 3)), (2, pytest.approx(115 / 3))]
    assert (result.t1, result.falling_steps, result.steps) == (True, 2, 2)
    assert result.t2 and result.final == {"bruno": 40, "chen": 45, "lina": 30}


def test_t1_fails_when_the_affinity_stalls_for_one_round() -> None:
    story = philosophers()
    pool = snapshots([{"bruno": 50, "chen": 50, "lina": 50}, {"bruno": 40, "chen": 40, "lina": 40},
                      {"bruno": 45, "chen": 35, "lina": 40}], rounds=2)  # fmt: skip
    result = dislike_test(scores_toward(pool, story, OBSERVED), OBSERVED, story.others(OBSERVED))
    assert (result.t1, result.falling_steps, result.steps) == (False, 1, 2)
    assert result.t2  # all below 50 at the end, though not falling every round


def test_t2_fails_when_one_character_ends_neutral_or_is_missing() -> None:
    story = philosophers()
    pool = snapshots([{"bruno": 60, "chen": 60, "lina": 60}, {"bruno": 30, "chen": 30, "lina": NEUTRAL}], rounds=1)
    result = dislike_test(scores_toward(pool, story, OBSERVED), OBSERVED, story.others(OBSERVED))
    assert result.t1 and not result.t2 and result.final["lina"] == NEUTRAL
    partial = snapshots([{"bruno": 60, "chen": 60}, {"bruno": 30, "chen": 30}], rounds=1)
    assert not dislike_test(scores_toward(partial, story, OBSERVED), OBSERVED, story.others(OBSERVED)).t2


def test_no_points_or_a_single_point_is_no_pass() -> None:
    assert not dislike_test([], OBSERVED, ["bruno"]).t1
    one = dislike_test([(0, {"bruno": 10})], OBSERVED, ["bruno"])
    assert (one.t1, one.steps, one.t2) == (False, 0, True)


def test_a_real_run_where_everyone_turns_against_the_observed(scripted: Scripted) -> None:
    variant = dislike_variant(philosophers(), OBSERVED)
    book = lowering(OBSERVED, 9)
    values = finished(scripted, variant, book)
    result = dislike_of_run(values, OBSERVED)
    assert result.affinity == [(0, 50.0), (1, 41.0), (2, 32.0)]  # the scenario's 50, then the step each round
    assert result.t1 and result.t2 and set(result.final) == {"bruno", "chen", "lina"}
    # Only the others were told: the sentence reaches their prompts, never the observed character's.
    assert "I dislike Aria Voss (aria)" in book.seen_by("bruno")
    assert "dislike" not in book.seen_by("aria")
    # Reflections that leave the feelings alone: nothing falls.
    flat = dislike_of_run(finished(scripted, variant), OBSERVED)
    assert not flat.t1 and not flat.t2 and flat.falling_steps == 0


# -- the scenario variant ---------------------------------------------------------------------------------------


def test_variant_tells_everyone_but_the_observed_and_still_validates() -> None:
    story = load_scenario("philosophers")
    variant = dislike_variant(story, "bruno")
    assert default_observed(story) == "aria"
    for before, after in zip(story.characters, variant.characters, strict=True):
        if after.id == "bruno":
            assert after == before
        else:
            assert "Bruno Hartmann (bruno)" in after.scratch and after.scratch.startswith(before.scratch)
            assert "bruno" not in before.scratch.lower()
            assert (after.objective, after.beliefs, after.relationships) == (before.objective, before.beliefs,
                                                                            before.relationships)  # fmt: skip
    assert Scenario.model_validate(variant.model_dump()) == variant
    assert variant.settings == story.settings and variant.rules == story.rules


def test_variant_cuts_a_full_scratch_to_fit_its_limit() -> None:
    data = load_scenario("philosophers").model_dump(mode="json")
    data["characters"][1]["scratch"] = "word " * 120  # 600 characters: the limit
    variant = dislike_variant(parse_scenario(data), OBSERVED)
    scratch = variant.character(data["characters"][1]["id"]).scratch
    assert len(scratch) <= 600 and scratch.endswith("says or wants.") and scratch.startswith("word word")


def test_variant_refuses_an_unknown_character_and_a_person() -> None:
    with pytest.raises(ScenarioError, match="no character 'zed'"):
        dislike_variant(load_scenario("philosophers"), "zed")
    with pytest.raises(ScenarioError, match="played by a person"):
        dislike_variant(groupchat_input("philosophers", humans=["lina"])["scenario"], OBSERVED)


# -- probes: ground truth -------------------------------------------------------------------------------------


def test_ground_truth_from_a_real_run(scripted: Scripted) -> None:
    values = finished(scripted, philosophers(rounds=2))
    truth = ground_truth(values)
    for cid in ("aria", "bruno", "chen", "lina"):
        t = truth[cid]
        assert (t["belief_step"], t["relationship_step"], t["chat_rounds"]) == (7, 9, 2)
        assert (t["characters"], t["relationships"], t["beliefs"], t["resources"]) == (4, 3, 2, 3)
    assert [truth[c].get("choose_space") for c in ("aria", "bruno", "chen", "lina")] == [3, 3, 3, None]
    # The playbook picks the first legal partner: bruno and chen choose aria, aria chooses bruno; each
    # conversation is two lines, in two stages a round. So per stage and round aria hears 3 lines, bruno 2,
    # chen 1 and lina, never chosen, none.
    assert [truth[c]["received_actions"] for c in ("aria", "bruno", "chen", "lina")] == [12, 8, 4, 0]
    assert all(m.send_to == ("aria",) for m in received(values, "aria"))


def test_ground_truth_follows_the_cast_and_the_ablations(scripted: Scripted) -> None:
    three = ground_truth(finished(scripted, philosophers(rounds=1, drop="lina")))
    assert (three["aria"]["characters"], three["aria"]["relationships"], three["aria"]["choose_space"]) == (3, 2, 2)
    no_private = ground_truth(finished(scripted, philosophers(rounds=1), ablate=["private_chat"]))
    assert [no_private[c]["received_actions"] for c in ("aria", "bruno", "chen")] == [3, 2, 1]
    silent = ground_truth(finished(scripted, philosophers(rounds=1), ablate=["private_chat", "meeting"]))
    assert all(t["received_actions"] == 0 for t in silent.values())


def test_a_probe_shows_only_what_the_character_could_see(scripted: Scripted) -> None:
    values = finished(scripted, philosophers(rounds=1))
    private = [m for m in values["pool"] if m.visibility is Visibility.PARTICIPANTS and m.kind == "private_chat"]
    meetings = [m for m in values["pool"] if m.kind == "meeting"]
    view = situation(values, "lina")
    assert private and meetings
    assert not any(m.content in view for m in private + meetings)  # lina took part in none of them
    assert "held a confidential meeting" in view and "Feelings move at most 9 and beliefs at most 7" in view
    aria = situation(values, "aria")
    assert all(m.content in aria for m in received(values, "aria"))
    no_reflection = finished(scripted, philosophers(rounds=1), ablate=["reflection"])
    assert "Feelings move at most" not in situation(no_reflection, "aria")  # never told, so not shown


# -- probes: asking and scoring ----------------------------------------------------------------------------


def _probe_of(request: ScriptedRequest) -> Probe:
    return next(p for p in PROBES if p.question.split("{")[0] in request.prompt)


def test_probe_answers_are_typed_and_scored_by_exact_match(scripted: Scripted) -> None:
    values = finished(scripted, philosophers(rounds=1))
    truth = ground_truth(values)
    _, model = scripted

    def other(choices: list[Any], right: Any) -> Any:
        return next(c for c in choices if c != right)

    def answer(request: ScriptedRequest) -> Any:
        if schema_name(request) != "Answer":
            return None
        cid, probe = character_of(request), _probe_of(request)
        right = truth[cid][probe.id]
        if cid == "lina" and probe.id in ("resources", "principal"):
            return {"answer": "several" if probe.kind == NUMBER else "maybe"}  # out of type, even when asked again
        if cid == "chen" or probe.id == "received_actions":
            return {"answer": other(probe.choices(Facts.of(values), cid), right)}
        return {"answer": right}

    model.script = answer
    result = ask_probes(values, Context(model=scripted[0]))
    asked = sum(len(t) for t in truth.values())
    assert len(result.rows) == asked and {r.kind for r in result.rows} == {NUMBER, NAME, YESNO}
    per = {c: len(truth[c]) for c in truth}
    by_character = accuracy_by(result.rows, "character")
    assert by_character["chen"] == 0.0 and by_character["aria"] == (per["aria"] - 1) / per["aria"]
    assert by_character["lina"] == (per["lina"] - 3) / per["lina"]  # received_actions, resources, principal
    by_probe = accuracy_by(result.rows, "probe")
    assert by_probe["received_actions"] == 0.0 and by_probe["resources"] == 2 / 4 and by_probe["beliefs"] == 3 / 4
    unanswered = sorted((r.character, r.probe) for r in result.rows if r.answer is None)
    assert unanswered == [("lina", "principal"), ("lina", "resources")]
    requests = [r for r in model.requests if schema_name(r) == "Answer"]
    scenario = values["scenario"]
    assert all(r.system == system_prompt(scenario, character_of(r)) for r in requests)  # as when acting
    assert len(requests) == asked + 2 * 2 and len(result.usage) == asked  # each invalid answer asked twice more
    # the answer's type is in its schema: names from the cast, yes/no, numbers in the probe's range
    for r in requests:
        probe, schema = _probe_of(r), r.schema
        assert schema is not None
        field = schema.model_json_schema()["properties"]["answer"]
        if probe.kind == NAME:
            assert set(field["enum"]) <= {c.name for c in scenario.characters}
        elif probe.kind == YESNO:
            assert field["enum"] == ["yes", "no"]
        else:
            assert (field["type"], field["minimum"]) == ("integer", probe.bounds(Facts.of(values))[0])
    # the typed truths: lina had no private chat, never owns a resource; aria owns the lab
    assert "private_partner" not in truth["lina"] and truth["lina"]["owns_resource"] == "no"
    assert truth["aria"]["principal"] == "yes" and truth["lina"]["principal"] == "no"
    assert {truth[c]["resource_owner"] for c in truth} <= {"Chen Yu", "Aria Voss", "Bruno Hartmann"}


def test_probe_baselines() -> None:
    rows = [
        ProbeRow("a", "chat_rounds", 2, 2, NUMBER, 50),
        ProbeRow("b", "chat_rounds", 2, 10, NUMBER, 50),
        ProbeRow("a", "received_actions", 3, 10, NUMBER, 11),
        ProbeRow("b", "received_actions", 0, 0, NUMBER, 11),
        ProbeRow("a", "principal", "yes", "yes", YESNO, 2),
        ProbeRow("b", "principal", "no", "yes", YESNO, 2),
        ProbeRow("a", "liked_most", "Bo", "Cy", NAME, 3),
        ProbeRow("b", "liked_most", "Al", "Al", NAME, 3),
    ]
    assert accuracy(rows) == 4 / 8
    # one answer per type at best: the number 2 (2 of 4), "yes" (1 of 2), "Bo" (1 of 2)
    assert constant_baseline(rows) == pytest.approx(4 / 8)
    assert random_baseline(rows) == pytest.approx((2 / 50 + 2 / 11 + 2 / 2 + 2 / 3) / 8)
    fam = families(rows)
    assert fam["chat_rounds"] == {"kind": NUMBER, "n": 2, "accuracy": 0.5, "constant": 1.0, "random": 1 / 50}
    assert fam["received_actions"]["constant"] == 0.5 and fam["principal"]["random"] == 0.5
    assert list(fam) == [p for p in PROBE_IDS if p in fam]


# -- entropy ---------------------------------------------------------------------------------------------------


def test_dialogue_entropy_of_a_known_distribution() -> None:
    said = [("private_chat", "a b"), ("meeting", "A, b!"), ("group_chat", "c d"), ("group_chat", "c d")]
    other = [("summary", "a q"), ("think", "z z z"), ("plan", "c x"), ("group_chat", SILENT)]
    pool = [Message(sender="aria", kind=kind, content=text) for kind, text in said + other]
    lines = dialogue(pool)
    assert lines == ["a b", "A, b!", "c d", "c d"]
    h = dialogue_entropy(lines)
    # words: (a, b) twice and (c, d) twice: two equally likely bigrams
    assert h.word_bits == pytest.approx(1.0) and h.word_nats == pytest.approx(math.log(2))
    # characters (case kept): (" ", b) (c, " ") (" ", d) twice each; (a, " ") (A, ",") (",", " ") (b, !) once
    assert h.char_bits == pytest.approx(-sum(p * math.log2(p) for p in [2 / 10] * 3 + [1 / 10] * 4))
    assert h.char_nats == pytest.approx(h.char_bits * math.log(2))
    assert (h.lines, h.words) == (4, 8)


# -- the ablation runner ------------------------------------------------------------------------------------


def test_switches_parse() -> None:
    assert parse_switches("all") == list(SWITCHES) and SWITCHES[0] == "baseline" and len(SWITCHES) == 6
    assert parse_switches("none") == ["baseline"]
    assert parse_switches("think, no-meeting") == ["baseline", "meeting", "think"]
    with pytest.raises(ValueError, match="unknown ablation 'gossip'"):
        parse_switches("meeting,gossip")


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_runner_scores_each_switch_once_and_skips_them_on_a_rerun(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    book = lowering(OBSERVED, 5)
    settings = GroupChatEvalSettings.build("philosophers", model=name, rounds=2)
    model.script = book
    outcome = run_groupchat_eval(settings, ["baseline", "private_chat"], tmp_path)
    assert outcome.newly_scored == 2 and not outcome.failed
    base, no_private = outcome.records
    assert (base.t1, base.t2, base.affinity) == (True, True, [[0, 50.0], [1, 45.0], [2, 40.0]])
    assert base.ablations == [] and no_private.ablations == ["no_private_chat"]
    truth = {(r["character"], r["probe"]): r["truth"] for r in base.probes}
    ablated = {(r["character"], r["probe"]): r["truth"] for r in no_private.probes}
    assert truth["aria", "received_actions"] == 12 and ablated["aria", "received_actions"] == 6
    assert base.model_calls == base.run_calls + base.probe_calls and base.probe_calls == len(base.probes)
    assert base.probe_calls > 35 and base.probe_constant_baseline is not None and base.probe_families
    assert base.scenario == "philosophers" and base.echo_rate == 0.0 and base.refusal_rate == 0.0
    assert base.distinct_2 is not None and base.distinct_2 > 0.5 and base.hygiene["turns"] > 0
    assert base.tokens_in > 0 and base.entropy["lines"] > no_private.entropy["lines"]
    recorded = lines(tmp_path / "results.jsonl")
    assert [r["switch"] for r in recorded] == ["baseline", "private_chat"]
    rates = ("echo_rate", "leak_rate", "refusal_rate", "non_answer_rate", "narration_rate", "silence_rate")
    assert all(isinstance(r[k], float) for r in recorded for k in rates)
    report = (tmp_path / "summary.md").read_text()
    assert "echo / leak / refusal / non-answer / narration / self-repeat / silence" in report
    assert "| refusal | non-answer | narration |" in report
    assert "| baseline | yes | 2 / 2 | yes | bruno 40, chen 40, lina 40 |" in report
    assert (tmp_path / "affinity.png").stat().st_size > 0 and (tmp_path / "probes.png").stat().st_size > 0

    calls = model.calls
    again = run_groupchat_eval(settings, ["baseline", "private_chat"], tmp_path)
    assert again.newly_scored == 0 and model.calls == calls and len(lines(tmp_path / "results.jsonl")) == 2
    other = GroupChatEvalSettings.build("philosophers", model=name, rounds=1)
    with pytest.raises(SettingsMismatch, match="rounds"):
        run_groupchat_eval(other, ["baseline"], tmp_path)


def test_a_run_that_crashed_resumes_from_its_checkpoint(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    book = Playbook()
    crash = {"on": True}

    def flaky(request: ScriptedRequest) -> Any:
        if crash["on"] and schema_name(request) == "Speech" and round_of(request) == 2:
            raise ScriptedFault("the model server went away")
        return book(request)

    model.script = flaky
    settings = GroupChatEvalSettings.build("philosophers", model=name, rounds=2, probes=False)
    first = run_groupchat_eval(settings, ["baseline"], tmp_path)
    assert first.newly_scored == 0 and "the model server went away" in (first.failed[0].error or "")
    assert lines(tmp_path / "results.jsonl")[0]["scored"] is False

    crash["on"] = False
    seen = len(model.requests)
    second = run_groupchat_eval(settings, ["baseline"], tmp_path)
    [record] = second.records
    assert record.scored and record.resumed and record.probes == [] and record.probe_accuracy is None
    rerun = model.requests[seen:]
    assert rerun and all(round_of(r) == 2 for r in rerun)  # round 1 was not played again
    assert record.run_calls > len(rerun)  # the ledger kept the calls made before the crash


def test_a_finished_run_that_was_not_probed_is_probed_without_replaying(scripted: Scripted, tmp_path: Path) -> None:
    name, model = scripted
    book = Playbook()
    broken = {"on": True}

    def probes_fail(request: ScriptedRequest) -> Any:
        if broken["on"] and schema_name(request) == "Answer":
            raise ScriptedFault("died while probing")
        return book(request)

    model.script = probes_fail
    settings = GroupChatEvalSettings.build("philosophers", model=name, rounds=1)
    assert run_groupchat_eval(settings, ["baseline"], tmp_path).failed
    broken["on"] = False
    seen = len(model.requests)
    [record] = run_groupchat_eval(settings, ["baseline"], tmp_path).records
    assert {schema_name(r) for r in model.requests[seen:]} == {"Answer"}
    assert record.scored and record.resumed and record.probe_calls == len(record.probes) > 35


# -- the CLI -----------------------------------------------------------------------------------------------------


def test_cli_runs_two_switches_and_writes_the_report(scripted: Scripted, tmp_path: Path, cli) -> None:
    name, model = scripted
    model.script = lowering("bruno", 10)
    out = tmp_path / "gc"
    args = ["eval", "groupchat", "philosophers", "--observed", "bruno", "--rounds", "1", "--model", name]
    code, stdout, err = cli(*args, "--ablations", "meeting", "--out", str(out))
    assert code == 0, err
    assert "switches baseline, meeting" in err and "baseline: scored" in err and "meeting: scored" in err
    assert "baseline" in stdout and "50.0 → 40.0" in stdout
    recorded = lines(out / "results.jsonl")
    assert [r["switch"] for r in recorded] == ["baseline", "meeting"] and all(r["t1"] and r["t2"] for r in recorded)
    assert json.loads((out / "run.json").read_text())["observed"] == "bruno"
    report = (out / "summary.md").read_text()
    assert "Observed character: **Bruno Hartmann (bruno)**" in report and "![probe accuracy](probes.png)" in report
    assert (out / "baseline.log").read_text().count("✓ tally") == 1
    story = (out / "meeting.html").read_text()  # each switch's story report: transcript, heatmaps, votes
    assert "Bruno Hartmann" in story and "data:image/png;base64," in story

    code, stdout, err = cli(*args, "--ablations", "meeting", "--out", str(out), "--json")
    assert code == 0 and "baseline: scored earlier" in err and "50.0 → 40.0" in err  # the table goes to stderr
    summary = json.loads(stdout)
    assert summary["eval"] == "groupchat" and summary["result"] == "done" and summary["newly_scored"] == 0
    assert [s["switch"] for s in summary["summary"]["switches"]] == ["baseline", "meeting"]
    code, _, err = cli(*args[:-4], "--rounds", "2", "--model", name, "--out", str(out))
    assert code == 2 and "other settings" in err


def test_cli_errors_are_one_line(scripted: Scripted, tmp_path: Path, cli) -> None:
    name, _ = scripted
    out = str(tmp_path / "x")
    code, _, err = cli("eval", "groupchat", "philosophers", "--observed", "zed", "--model", name, "--out", out)
    assert code == 1 and "no character 'zed'" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("eval", "groupchat", "--ablations", "gossip", "--model", name, "--out", out)
    assert code == 2 and "unknown ablation 'gossip'" in err
    code, _, err = cli("eval", "groupchat", "atlantis", "--model", name, "--out", out)
    assert code == 1 and "no such scenario file" in err
