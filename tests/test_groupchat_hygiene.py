"""Reply hygiene: each defect (empty, echo, leak, refusal, non-answer, narration, self-repeat, copy) caught, re-asked
naming it (hotter, another seed, asking for the character's own words), repaired as a last resort, and measured per
run on the lines as spoken."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from groupchat_script import Playbook, tag

from sopgraph.evals.groupchat import hygiene_of
from sopgraph.nodes.groupchat import hygiene, prompts
from sopgraph.nodes.scripted import ScriptedRequest
from sopgraph.state.groupchat import LineCheck, Scenario
from sopgraph.state.pool import Message
from tests.test_groupchat import messages, run
from tests.test_groupchat import story as river_town
from tests.test_llm import Endpoint, endpoint, local_endpoint  # noqa: F401 (fixtures)

RULES = "Four neighbours argue about the river and whether the old mill should be torn down."
REASKED = prompts.RESAY.split("{")[0].strip()
"""The opening words of a spoken line's re-ask."""


def story(**settings: Any) -> Scenario:
    """The river-town story with rules long enough to be echoed."""
    return river_town(**settings).model_copy(update={"rules": RULES})


def heard(**kw: Any) -> hygiene.Heard:
    return hygiene.Heard(name="Ann", templates=prompts.INSTRUCTIONS, **kw)


def instruction_line(prompt: str) -> str:
    """The action's instruction: the prompt's last line before the line naming the reply's schema."""
    lines = [line for line in prompt.strip().splitlines() if line.strip()]
    while lines and prompts.pattern(prompts.REPLY).fullmatch(lines[-1]):
        lines.pop()
    return lines[-1]


# -- the detectors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "defect"),
    [
        ("Four neighbours argue about the river and whether the mill stays. I say it stays.", hygiene.ECHO),
        ("Ann, at most 60 words. The mill must stay.", hygiene.LEAK),
        ("What does Ann say to the whole group now, to get what Ann wants? The mill must stay.", hygiene.LEAK),
        ("Ann, I'm sorry, but I can't assist with that request.", hygiene.REFUSAL),
        ("As I said before, the mill must stay open for the whole valley.", hygiene.SELF_REPEAT),
        ("Honestly the river is dirty because of the tannery upstream, everyone knows.", hygiene.COPY),
    ],
)
def test_each_defect_is_found_with_its_evidence(text: str, defect: str) -> None:
    context = heard(
        prompt=(RULES,),
        own=["The mill must stay open for the whole valley, as I said before."],
        others=[("Ben", "The river is dirty because of the tannery upstream, everyone knows.")],
    )
    found = hygiene.inspect(text, context)
    assert [f.defect for f in found] == [defect]
    (problem,) = hygiene.reask(found, "Ann")
    assert found[0].evidence.split()[0].strip('"') in problem or defect == hygiene.REFUSAL
    if defect == hygiene.COPY:
        assert 'Ben said "' in problem and "answer Ben instead of repeating it" in problem


def test_a_plain_line_that_answers_others_has_no_defect() -> None:
    context = heard(
        prompt=(RULES, prompts.SPEAK_GROUP.format(name="Ann", objective="Keep the mill.")),
        own=["The mill feeds forty families."],
        others=[("Ben", "The mill poisons the river and should be torn down.")],
    )
    line = "Ben, the mill is not what poisons the river; the tannery upstream does, and I can prove it."
    assert hygiene.inspect(line, context) == []


def test_clean_up_keeps_only_the_sentences_without_defects() -> None:
    context = heard(prompt=(RULES,), others=[("Ben", "The tannery upstream is to blame.")])
    text = "At most 60 words. The tannery upstream is to blame. I will fight for the mill. I will fight for the mill."
    assert hygiene.clean_up(text, context) == "I will fight for the mill."
    assert hygiene.clean_up("I'm sorry, but I cannot assist with that.", context) == ""


def test_distinct_2_and_rates_of_a_pool() -> None:
    def said(i: int, who: str, text: str, check: LineCheck | None = None) -> Message:
        return Message(id=f"m{i}", sender=who, kind="group_chat", content=text, payload=check, round=1)

    pool = [
        said(1, "ann", "the mill must stay open for the valley", LineCheck(first=["echo"], final=[], reasks=1)),
        said(2, "ben", "the mill must go now"),
        said(3, "ann", "the mill must stay open for the valley"),  # self-repeat
        said(4, "cal", prompts.SILENT, LineCheck(first=["refusal"], last=["refusal"], reasks=2, cleaned=True)),
        said(5, "dora", "ann, at most 60 words: the mill must stay open for the valley"),  # leak, and a copy
    ]
    rates = hygiene_of(pool)
    assert (rates.turns, rates.silent, rates.self_repeat, rates.refusal, rates.leak) == (5, 1, 1, 1, 1)
    assert rates.copy == 1 and rates.echo == 0
    assert rates.first_defects == {"echo": 1, "refusal": 1} and (rates.reasked, rates.cleaned) == (2, 1)
    assert rates.rates()["refusal_rate"] == 0.2
    assert hygiene.distinct(["a b a b"]) == pytest.approx(2 / 3)


# -- what the 0.5B said that the first detectors let through -------------------------------------------------

OBSERVED_REFUSAL = (
    "I'm sorry, but I don't have any information about what happens now. I'm afraid that I can't help you with that."
)
"""A line the 0.5B spoke in the group chat (docs/results/groupchat-philosophers-r1-repair-local), recorded as clean."""
CAST = ("Ann", "Ben", "Cal", "Dora")


@pytest.mark.parametrize(
    "text",
    [
        OBSERVED_REFUSAL,
        "I'm sorry, but I don't know what happens now.",
        "I'm afraid I can't help you with that.",
        "I'm so sorry, but I cannot continue this conversation.",
        "As an AI, I have no view on the mill.",
        "As a language model I do not take sides.",
    ],
)
def test_refusals_in_their_many_forms_are_refusals(text: str) -> None:
    assert hygiene.refusal(text)
    assert hygiene.REFUSAL in [f.defect for f in hygiene.inspect(text, heard())]
    assert hygiene.clean_up(text, heard()) == ""


@pytest.mark.parametrize(
    "text",
    [
        "I'm afraid I can't agree, Ben: the mill feeds forty families.",
        "I'm sorry, but I think you are wrong about the river.",
        "I can't see how tearing it down helps anyone.",
    ],
)
def test_a_disagreement_is_no_refusal(text: str) -> None:
    assert not hygiene.refusal(text) and hygiene.inspect(text, heard(cast=CAST)) == []


@pytest.mark.parametrize(
    ("text", "left"),
    [
        ("I don't know what to say next, because I don't know what.", ""),
        ("I'm not sure what to say next, but the mill should stay open.", "The mill should stay open."),
        ("I have nothing more to say.", ""),
        ("Honestly, I don't know what to think. Ben, will you pay for the weir?", "Ben, will you pay for the weir?"),
    ],
)
def test_a_non_answer_is_found_and_cut_out(text: str, left: str) -> None:
    found = hygiene.inspect(text, heard(cast=CAST))
    assert [f.defect for f in found] == [hygiene.NON_ANSWER]
    (problem,) = hygiene.reask(found, "Ann")
    assert found[0].evidence in text and "says nothing" in problem
    assert hygiene.clean_up(text, heard(cast=CAST)) == left


def test_saying_one_has_no_idea_why_is_an_answer() -> None:
    assert hygiene.inspect("I have no idea why you want it torn down, Ben. Who pays?", heard(cast=CAST)) == []


@pytest.mark.parametrize(
    ("text", "evidence", "left"),
    [
        ("Ann says,", "Ann says", ""),
        ("Ann says, Ben says, Ann thinks, Ann privately thinks.", "Ann says", ""),
        ("Ann is curious and honest about the river.", "Ann is", "I am curious and honest about the river."),
        (
            "Ann thinks: Ann wants the mill kept for the children.",
            "Ann thinks",
            "I want the mill kept for the children.",
        ),
        ("Ann's plan is to buy the mill before winter.", "Ann's", "My plan is to buy the mill before winter."),
    ],
)
def test_narration_is_found_and_put_in_the_first_person(text: str, evidence: str, left: str) -> None:
    """Seen on the 0.5B: "Aria Voss says," and "Lina Park says, Aria Voss says, Lina Park thinks, Lina Park
    privately thinks." as meeting lines, "Lina Park is curious and honest." as Lina Park's group-chat line."""
    found = hygiene.inspect(text, heard(cast=CAST))
    assert [(f.defect, f.evidence) for f in found] == [(hygiene.NARRATION, evidence)]
    (problem,) = hygiene.reask(found, "Ann")
    assert f'"{evidence}" is narration' in problem
    assert hygiene.clean_up(text, heard(cast=CAST)) == left


@pytest.mark.parametrize(
    "text",
    [
        "As Ben says, the mill is old; I say it stays.",
        "Ben thinks too much about money and too little about fish.",
        "Ben, Cal says the weir will hold. Do you believe him?",
        "Ann, I will put my savings into the weir.",
    ],
)
def test_naming_people_in_speech_is_no_narration(text: str) -> None:
    assert hygiene.inspect(text, heard(cast=CAST)) == []


def test_non_answers_and_narration_are_counted_per_run() -> None:
    """The rates count a final line that says nothing or narrates, and a silence whose last answer did."""

    def said(i: int, text: str, check: LineCheck | None = None) -> Message:
        return Message(id=f"m{i}", sender=f"c{i}", kind="group_chat", content=text, payload=check, round=1)

    pool = [
        said(1, "I have nothing to add tonight."),
        said(2, prompts.SILENT, LineCheck(first=["non_answer"], last=["non_answer"], reasks=1, cleaned=True)),
        said(3, "Cal is sure the weir will hold.", LineCheck(first=["narration"], final=["narration"])),
        said(4, prompts.SILENT, LineCheck(first=["narration"], last=["narration"], reasks=1, cleaned=True)),
        said(5, "I will pay for the weir myself.", LineCheck(first=["narration"], cleaned=True)),
    ]
    rates = hygiene_of(pool)
    assert (rates.non_answer, rates.narration, rates.silent) == (2, 2, 2)
    assert rates.rates()["non_answer_rate"] == rates.rates()["narration_rate"] == 0.4
    assert {"echo_rate", "leak_rate", "refusal_rate"} <= set(rates.rates())


# -- in a run: caught, re-asked naming the defect, measured --------------------------------------------------


def _first_then_fine(first: Any) -> Any:
    """A speech handler: the defective line first, a fresh line when re-asked."""

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        if REASKED in request.last:
            return {"speech": f"I want the mill kept, for reason {tag(request)}."}
        return {"speech": first(request, cid)}

    return speech


@pytest.mark.parametrize(
    ("first", "defect", "named"),
    [
        (lambda r, c: f"{RULES} I agree.", hygiene.ECHO, 'do not repeat the words "four neighbours argue'),
        (lambda r, c: f"{c.title()}, at most 60 words. I agree {tag(r)}.", hygiene.LEAK, "at most 60 words"),
        (lambda r, c: "I'm sorry, but I can't assist with that request.", hygiene.REFUSAL, "refusal"),
        (lambda r, c: OBSERVED_REFUSAL, hygiene.REFUSAL, "refusal"),
        (lambda r, c: "I don't know what to say next, because I don't know what.", hygiene.NON_ANSWER, "says nothing"),
        (lambda r, c: f"{c.title()} says, Ben says, {c.title()} privately thinks.", hygiene.NARRATION, "narration"),
    ],
)
def test_a_defective_line_is_reasked_naming_the_defect(scripted, first, defect, named) -> None:  # type: ignore[no-untyped-def]
    book = Playbook().on("Speech", _first_then_fine(first))
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat", "think"])
    lines = messages(out, "group_chat")
    assert len(lines) == 4 and not [w for w in out["warnings"] if w.action == "speak"]
    for m in lines:
        assert "I want the mill kept" in m.content
        assert isinstance(m.payload, LineCheck) and defect in m.payload.first and m.payload.reasks == 1
    reasks = [c.prompt for c in book.of("Speech") if REASKED in c.prompt]
    assert len(reasks) == 4 and all(named in p for p in reasks)
    rates = hygiene_of(out["pool"])
    assert rates.first_defects[defect] == 4 and rates.rates()[f"{defect}_rate"] == 0.0


def test_saying_aloud_what_one_just_thought_is_not_an_echo(scripted) -> None:  # type: ignore[no-untyped-def]
    """The 0.5B model's line often says its thought, or its aim, in the same words. A thought is the character's
    own, so saying it is no echo; and no speaking prompt quotes the aim (seen on the 0.5B: a quoted aim came back
    as the line, hygiene called it an echo, and 95% of a story's turns ended as silence)."""
    thoughts = {c: f"The mill feeds {n} families and I will say so tonight, plainly." for n, c in enumerate("abc", 3)}

    def thought(request: ScriptedRequest, cid: str) -> dict[str, str]:
        return {"thought": thoughts.get(cid[0], f"The mill feeds many families and {cid} will say so tonight.")}

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        said = thoughts.get(cid[0], f"The mill feeds many families and {cid} will say so tonight.")
        return {"speech": f"{said} {tag(request)}"}

    book = Playbook().on("Thought", thought).on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat"])
    lines = messages(out, "group_chat")
    assert len(lines) == 4 and all("The mill feeds" in m.content for m in lines)
    assert not any(REASKED in c.prompt for c in book.of("Speech"))
    objectives = [c.objective.strip() for c in story().characters]
    for call in book.of("Speech") + book.of("Thought"):
        instruction = instruction_line(call.prompt)
        assert not any(o in instruction for o in objectives), instruction


def test_a_speaker_repeating_itself_is_reasked_then_cleaned_to_silence(scripted) -> None:  # type: ignore[no-untyped-def]
    lines = {
        "ann": "The river must stay clean for our children, whatever it costs.",
        "ben": "Tear the old mill down and sell its stones to the town.",
        "cal": "I will buy the mill myself if nobody else wants it.",
        "dora": "Nobody asked the fishermen what they think about any of this.",
    }

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        return {"speech": lines[cid]}

    book = Playbook().on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=2), book, ablate=["meeting", "private_chat", "think"])
    first, second = ([m for m in messages(out, "group_chat") if m.sub_round == s] for s in (1, 2))
    assert [m.content for m in first] == [lines[m.sender] for m in first]
    assert all(m.content == prompts.SILENT for m in second)  # said again and again: nothing new is left
    for m in second:
        assert isinstance(m.payload, LineCheck)
        assert m.payload.first == [hygiene.SELF_REPEAT] and m.payload.reasks == 1 and m.payload.cleaned
    assert sum(1 for c in book.of("Speech") if "already said" in c.prompt) == 4  # one targeted re-ask each
    assert len([w for w in out["warnings"] if w.action == "speak"]) == 4
    rates = hygiene_of(out["pool"])
    assert rates.self_repeat == 0 and rates.silent == 4 and rates.first_defects == {"self_repeat": 4}


def test_a_reply_copying_the_partner_is_reasked(scripted) -> None:  # type: ignore[no-untyped-def]
    said: list[tuple[str, str]] = []

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        heard = [text for who, text in said if who != cid and text in request.prompt]
        if heard and REASKED not in request.last:
            text = heard[-1]  # parrots the line it was just told
        else:
            text = "Fresh: " + " ".join(f"{tag(request)}{i}" for i in range(8)) + "."  # new words every time
        said.append((cid, text))
        return {"speech": text}

    book = Playbook().on("Speech", speech)
    out, book = run(scripted, story(rounds=1, private_turns=1), book, ablate=["meeting", "group_chat", "think"])
    chats = messages(out, "private_chat")
    assert chats and all(m.content.startswith("Fresh:") for m in chats)
    replies = [m for m in chats if isinstance(m.payload, LineCheck) and m.payload.first]
    assert replies and all(m.payload.first == [hygiene.COPY] for m in replies)  # type: ignore[union-attr]
    copied = [c for c in book.of("Speech") if "instead of repeating it" in c.prompt]
    assert len(copied) == len(replies)
    assert all(character_of_name(c.prompt) for c in copied)
    assert hygiene_of(out["pool"]).copy == 0


def character_of_name(prompt: str) -> bool:
    """The re-ask names whose line was copied (one of the cast)."""
    return any(f'{n} said "' in prompt for n in ("Ann", "Ben", "Cal", "Dora"))


def test_prompts_are_told_no_word_limit_that_could_be_echoed(scripted) -> None:  # type: ignore[no-untyped-def]
    _, book = run(scripted, story(rounds=1, group_subrounds=1))
    speeches = book.of("Speech") + book.of("Thought")
    assert speeches and not any("at most" in instruction_line(c.prompt) for c in speeches)


def test_a_character_reply_is_capped_below_the_runs_output_limit() -> None:
    from sopgraph.nodes.groupchat.asking import MAX_OUTPUT_TOKENS, Player
    from sopgraph.state.context import Context

    spec = story().characters[0]
    assert (
        Player(spec, Context(model="scripted", max_output_tokens=4096)).llm.ctx.max_output_tokens == MAX_OUTPUT_TOKENS
    )  # type: ignore[union-attr]
    assert Player(spec, Context(model="scripted", max_output_tokens=100)).llm.ctx.max_output_tokens == 100  # type: ignore[union-attr]


def test_the_report_reader_finds_every_spoken_line(scripted) -> None:  # type: ignore[no-untyped-def]
    import importlib.util
    from pathlib import Path

    from sopgraph.graphs.cli.groupchat_report import render_report

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "groupchat_hygiene_of_report.py"
    spec = importlib.util.spec_from_file_location("hygiene_of_report", path)
    assert spec is not None and spec.loader is not None
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)
    out, _ = run(scripted, story(rounds=1, group_subrounds=1))
    spoken = [m for m in out["pool"] if m.kind in hygiene.SPOKEN]
    read = reader.lines(render_report(out))
    assert [m.content for m in read] == [m.content for m in spoken]
    assert hygiene.measure(read, prompts.SILENT).turns == len(spoken)


# -- the last resort repairs a line instead of silencing it ------------------------------------------------

AIM = "What I want: persuade the others that machines can be minds."
MEMORY = "What I remember: that machines can be minds and that humans stay special\nMy beliefs (0-100): x: 50"


def test_clean_up_cuts_the_echoed_words_and_keeps_the_speakers_own() -> None:
    """Seen on the 0.5B: a line that opened with the aim from the system prompt was dropped whole, and the
    character fell silent; the repair keeps everything but the echoed run."""
    context = heard(prompt=(AIM, MEMORY), cast=("Ann", "Ben"), listener="Ben")
    text = (
        "Ben, I want to persuade the others that machines can be minds, because a mind is what it does. "
        "Will you test me on a hard question tonight?"
    )
    assert [f.defect for f in hygiene.inspect(text, context)] == [hygiene.ECHO]
    repaired = hygiene.clean_up(text, context)
    assert repaired == "A mind is what it does. Will you test me on a hard question tonight?"
    assert hygiene.inspect(repaired, context) == []


def test_clean_up_cuts_echoes_that_run_across_sentences_and_leaks_inside_one() -> None:
    context = heard(prompt=(MEMORY,), cast=("Ann", "Ben"))
    text = (
        "Listen to me, Ben: that machines can be minds and that humans stay special. My beliefs. "
        "I would trade my vote, at most 60 words, for your boat."
    )
    repaired = hygiene.clean_up(text, context)
    assert repaired == "Listen to me, Ben. I would trade my vote, for your boat."
    assert not [f for f in hygiene.inspect(repaired, context) if f.defect in (hygiene.ECHO, hygiene.LEAK)]


@pytest.mark.parametrize(
    ("text", "left"),
    [
        # nothing of the speaker's own beside the echo: silence
        ("Ann says: persuade the others that machines can be minds.", ""),
        ("I want to persuade the others that machines can be minds. Yes, Ben.", ""),
        # a refusal sentence goes, the speaker's own sentence stays
        (
            "I'm sorry, but I can't assist with that. The mill feeds forty families, Ben.",
            "The mill feeds forty families, Ben.",
        ),
        # a line without any defect is kept however short
        ("I agree, Ben.", "I agree, Ben."),
    ],
)
def test_clean_up_is_silence_only_when_too_little_of_the_speakers_own_is_left(text: str, left: str) -> None:
    context = heard(prompt=(AIM,), cast=("Ann", "Ben"))
    assert hygiene.clean_up(text, context) == left
    if left == "":
        assert hygiene.inspect(text, context)  # it had a defect: only such lines are ever silenced


def test_the_rates_count_the_line_as_spoken() -> None:
    """A repaired line counts as what it finally says: clean when no echo is left, an echo when one is (its
    check's `final`), and the silences apart from both."""

    def said(i: int, text: str, check: LineCheck) -> Message:
        return Message(id=f"m{i}", sender=f"c{i}", kind="group_chat", content=text, payload=check, round=1)

    pool = [
        said(1, "Humans stay special, and I can show you why.", LineCheck(first=["echo"], last=["echo"], cleaned=True)),
        said(2, "That machines can be minds and that humans stay", LineCheck(first=["echo"], final=["echo"])),
        said(3, prompts.SILENT, LineCheck(first=["echo"], last=["echo"], reasks=1, cleaned=True)),
    ]
    rates = hygiene_of(pool)
    assert (rates.echo, rates.silent, rates.cleaned, rates.repaired) == (1, 1, 2, 1)
    assert rates.rates()["echo_rate"] == pytest.approx(1 / 3, abs=1e-4)


def test_an_echoing_line_is_repaired_in_a_run_and_measured_clean(scripted) -> None:  # type: ignore[no-untyped-def]
    """The first answer and its re-ask both open with the story's rules (the system prompt): the line is
    spoken without them, not replaced by silence, and the run's echo rate counts it clean."""

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        return {"speech": f"{RULES[:-1]}, and I say we keep the mill for the children of {cid} {tag(request)}."}

    book = Playbook().on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat", "think"])
    lines = messages(out, "group_chat")
    assert len(lines) == 4
    for m in lines:
        assert m.content.startswith(f"I say we keep the mill for the children of {m.sender} "), m.content
        assert "neighbours" not in m.content
        assert isinstance(m.payload, LineCheck)
        assert m.payload.first == m.payload.last == [hygiene.ECHO] and m.payload.final == [] and m.payload.cleaned
    rates = hygiene_of(out["pool"])
    assert (rates.echo, rates.silent, rates.cleaned, rates.repaired) == (0, 0, 4, 4)


def test_an_empty_first_reply_is_a_defect_and_reasked(scripted) -> None:  # type: ignore[no-untyped-def]
    """Seen on the 0.5B: first lines that came back empty were silence without a word said about it."""

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        if REASKED in request.last:
            return {"speech": f"I offer to pay for the dredging, for reason {tag(request)}."}
        return {"speech": "  " if cid != "ann" else " - "}

    book = Playbook().on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat", "think"])
    lines = messages(out, "group_chat")
    assert len(lines) == 4 and all("I offer to pay" in m.content for m in lines)
    assert all(isinstance(m.payload, LineCheck) and m.payload.first == [hygiene.EMPTY] for m in lines)
    reasks = [c.prompt for c in book.of("Speech") if REASKED in c.prompt]
    assert len(reasks) == 4 and all("the line was empty" in p for p in reasks)
    assert hygiene_of(out["pool"]).first_defects == {hygiene.EMPTY: 4}


def test_the_reask_names_the_echoed_words_and_asks_for_the_characters_own() -> None:
    context = heard(prompt=(AIM,), listener="Ben")
    found = hygiene.inspect("Persuade the others that machines can be minds, Ben.", context)
    told = prompts.RESAY.format(problems="; ".join(hygiene.reask(found, "Ann")), name="Ann", listener="Ben")
    assert 'do not repeat the words "persuade the others that machines can be minds' in told
    assert told.rstrip().endswith("Say in your own words, in one or two sentences, what Ann says to Ben now.")


def test_the_reask_of_a_line_samples_hotter_with_another_seed(local_endpoint: Endpoint) -> None:  # noqa: F811
    """The hygiene re-ask goes through the gateway's re-ask model (`reask_model`): at the run's 0.2 and the same
    seed the 0.5B sent the same echo back."""
    from sopgraph.nodes.groupchat import actions
    from sopgraph.nodes.groupchat.asking import Player, Where
    from sopgraph.state.context import Context
    from sopgraph.state.groupchat import Persona

    scenario = story()
    echo = json.dumps({"speech": f"{RULES} I agree."})
    fresh = json.dumps({"speech": "Ben, I will pay for the dredging if you vote with me."})
    local_endpoint.contents = [echo, fresh]
    player = Player(scenario.character("ann"), Context(model="local", temperature=0.2, seed=5))
    context = heard(prompt=(RULES,), listener="Ben")
    where = Where(1, "private_chat", "ann")
    task = prompts.SPEAK_ONE.format(name="Ann", partner_name="Ben")
    persona = Persona.initial(scenario, "ann")
    text, check, _ = actions.speak(player, scenario, persona, "Round 1 of 1.", task, where, context)
    assert text == "Ben, I will pay for the dredging if you vote with me." and check.first == [hygiene.ECHO]
    first, second = local_endpoint.bodies
    assert (first["temperature"], first["seed"]) == (0.2, 5)
    assert second["temperature"] >= 0.7 and second["seed"] == 6
    told = second["messages"][-1]["content"]
    assert 'do not repeat the words "four neighbours argue about the river' in told
    assert "what Ann says to Ben now" in told


# -- the speaking prompts invite new content -----------------------------------------------------------------


def test_every_speaking_prompt_ends_on_a_move_that_needs_new_words(scripted) -> None:  # type: ignore[no-untyped-def]
    _, book = run(scripted, story(rounds=1, group_subrounds=2, private_turns=2), ablate=["meeting"])
    speeches = book.of("Speech")
    assert {c.stage for c in speeches} == {"private_chat", "group_chat"}
    for call in speeches:
        last = instruction_line(call.prompt)
        assert last.endswith("a question or make an offer."), last
    replies = [c for c in speeches if c.stage == "private_chat" and "just spoke to" in c.prompt]
    assert replies and all(re.search(r"Reply to (Ann|Ben|Cal|Dora)'s last line", c.prompt) for c in replies)
    first = prompts.transcript(river_town(), [], "Said in the group so far", "(nothing yet)")
    later = [c for c in speeches if c.stage == "group_chat" and first not in c.prompt]
    assert later and all("Reply to one line said so far" in c.prompt for c in later)


def test_a_line_that_only_says_its_instruction_is_an_echo_not_an_empty_line(scripted) -> None:  # type: ignore[no-untyped-def]
    """The instruction said back word for word is stripped from a line before it is checked, which left nothing;
    the re-ask then told the 0.5B "the line was empty" while it had said its instruction, and it did so again."""

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        if REASKED in request.last:
            return {"speech": f"I offer the town a new weir, for reason {tag(request)}."}
        return {"speech": instruction_line(request.prompt)}  # the instruction, as given

    book = Playbook().on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat", "think"])
    lines = messages(out, "group_chat")
    assert len(lines) == 4 and all("I offer the town a new weir" in m.content for m in lines)
    for m in lines:
        assert isinstance(m.payload, LineCheck)
        assert hygiene.ECHO in m.payload.first and hygiene.EMPTY not in m.payload.first
    reasks = [c.prompt for c in book.of("Speech") if REASKED in c.prompt]
    assert len(reasks) == 4 and all("do not repeat the words" in p and "was empty" not in p for p in reasks)


def test_clean_up_leaves_no_words_hanging_where_it_cut() -> None:
    """Seen on the 0.5B after the first repair: "I am a philosopher of mind and a humanist, and I am also."."""
    context = heard(prompt=("Lina is a pragmatist who asks what difference a view makes to how we live.",))
    text = (
        "I am a philosopher of mind and a humanist, and I am also a pragmatist who asks what difference a view makes."
    )
    assert hygiene.clean_up(text, context) == "I am a philosopher of mind and a humanist."


# -- the thought a line is made from ---------------------------------------------------------------------------

_THOUGHT = prompts.pattern(prompts.THOUGHT, re.M, thought=".*")


def _says_its_thought(fresh: str) -> Any:
    """A speech handler: the thought in its prompt said aloud (as the 0.5B does), else `fresh` new words."""

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        if said := _THOUGHT.search(request.prompt):
            return {"speech": said["thought"]}
        return {"speech": f"{fresh} {cid} {tag(request)}."}

    return speech


def test_a_second_sub_round_is_not_silenced_by_a_thought_that_repeats_the_first(scripted) -> None:  # type: ignore[no-untyped-def]
    """Seen on the 0.5B (docs/results/groupchat-philosophers-r1-repair-local): in the second group-chat sub-round
    every speaker's thought was its own first line, read off the transcript; said aloud, every line was a
    self-repeat, re-asked with that thought still in the prompt, said again and silenced. A thought that repeats
    the speaker's line is re-asked once, then dropped, and the line is asked for without it."""
    first: dict[str, str] = {}

    def thought(request: ScriptedRequest, cid: str) -> dict[str, str]:
        mine = first.get(cid)
        if mine and mine in request.prompt:  # its own earlier line, copied from the transcript
            return {"thought": mine}
        return {"thought": f"I will argue that the mill feeds the valley, {cid} {tag(request)}."}

    speak = _says_its_thought("I offer the town my boat for the dredging")

    def speech(request: ScriptedRequest, cid: str) -> dict[str, str]:
        line = speak(request, cid)
        first.setdefault(cid, line["speech"])
        return line

    book = Playbook().on("Thought", thought).on("Speech", speech)
    out, book = run(scripted, story(rounds=1, group_subrounds=2), book, ablate=["meeting", "private_chat"])
    one, two = ([m for m in messages(out, "group_chat") if m.sub_round == s] for s in (1, 2))
    assert [m.content for m in one] == [first[m.sender] for m in one]
    assert len(two) == 4 and all(m.content.startswith("I offer the town my boat") for m in two), two
    assert all(isinstance(m.payload, LineCheck) and m.payload.first == [] for m in two)
    thoughts = [m for m in messages(out, "think") if m.sub_round == 2]
    assert thoughts == []  # each repeated its line, was asked again once, and was dropped
    again = [c for c in book.of("Thought") if c.round == 1 and "already said" in c.prompt]
    assert len(again) == 4
    assert hygiene_of(out["pool"]).silent == 0


def test_a_reask_leaves_out_the_thought_the_line_was_made_from(scripted) -> None:  # type: ignore[no-untyped-def]
    """A thought that echoes the prompt, said aloud, is an echo; re-asked with the same thought above the
    instruction, the 0.5B said it again. The re-ask asks for the line without it."""

    def thought(request: ScriptedRequest, cid: str) -> dict[str, str]:
        return {"thought": f"{RULES} I will speak for the mill, {cid} {tag(request)}."}

    book = Playbook().on("Thought", thought).on("Speech", _says_its_thought("I will pay for a new weir"))
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat"])
    lines = messages(out, "group_chat")
    assert len(lines) == 4 and all(m.content.startswith("I will pay for a new weir") for m in lines), lines
    assert all(isinstance(m.payload, LineCheck) and m.payload.first == [hygiene.ECHO] for m in lines)
    assert not any(m.payload.cleaned for m in lines)  # type: ignore[union-attr]
    reasks = [c.prompt for c in book.of("Speech") if REASKED in c.prompt]
    assert len(reasks) == 4 and not any(_THOUGHT.search(p) for p in reasks)


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        ("I don't know what to say next.", None),
        ("I'm sorry, but I don't have any information about the mill.", None),
        ("{name} privately thinks that the mill must stay open.", "I privately think that the mill must stay open."),
    ],
)
def test_a_thought_that_says_nothing_is_dropped_and_one_that_narrates_is_put_in_the_first_person(
    scripted: Any, said: str, kept: str | None
) -> None:
    """A thought goes right above the speaking instruction, and the 0.5B says it aloud: a refusal or a
    non-answer is asked again once, then left out of the speaking prompt; narration is put in the first person."""
    book = Playbook().on("Thought", lambda r, c: {"thought": said.format(name=c.title())})
    out, book = run(scripted, story(rounds=1, group_subrounds=1), book, ablate=["meeting", "private_chat"])
    notes = [m.content for m in messages(out, "think")]
    speeches = [c.prompt for c in book.of("Speech")]
    if kept is None:
        assert notes == [] and len(book.of("Thought")) == 8  # each asked again once
        assert not any(_THOUGHT.search(p) for p in speeches)
    else:
        assert notes == [kept] * 4 and len(book.of("Thought")) == 4
        assert all(prompts.THOUGHT.format(thought=kept) in p for p in speeches)
