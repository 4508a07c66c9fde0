"""Group-chat behaviour: the T1/T2 dislike test and the entropy of a run's dialogue.

T1/T2 (AgentGroupChat's behaviour tests). Every character but an *observed* one is told, in its private
scratch, to dislike the observed character; nothing else about the story changes. Relationship scores run
from 0 to 100 with 50 neutral. From the persona snapshots in the pool (`timeline` below: the
start, then after each round) we read every other character's score toward the observed one:

- *affinity* at round r: the mean of the others' scores toward the observed character at that point
  (round 0: the scenario's initial scores, from the setup snapshot);
- **T1** passes when the affinity falls strictly from each point to the next (at least one step);
- **T2** passes when every other character's last score toward the observed one is below 50 (negative:
  below neutral; exactly 50 is not negative).

Entropy: the 2-gram Shannon entropy of the spoken dialogue (every private-chat, meeting and group-chat line
in the pool, in order, without the placeholder of a character that said nothing), at word and character
level, in bits and nats (`evals/metrics.py`).

Hygiene (`nodes/groupchat/hygiene.py`): per run, the share of spoken turns whose recorded line echoes its
prompt, leaks instruction wording, was a refusal, said it had nothing to say, narrated instead of speaking,
nearly repeats the speaker's own earlier line or copies another's; the share of silences; distinct-2 of the
dialogue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from annotated_types import MaxLen

from sopgraph.evals.metrics import BITS, NATS, ngram_entropy, word_tokens
from sopgraph.nodes.groupchat import hygiene
from sopgraph.nodes.groupchat.prompts import INSTRUCTIONS, SILENT
from sopgraph.scenarios import ScenarioError, parse_scenario
from sopgraph.state.groupchat import HUMAN, CharacterSpec, PersonaSnapshot, Scenario, Stage
from sopgraph.state.pool import Message

NEUTRAL = 50
"""A relationship score below this is negative."""


def timeline(pool: Sequence[Message], rounds: int) -> list[tuple[str, dict[str, PersonaSnapshot]]]:
    """Persona snapshots at each point the scores may change: the start, then after every round (the T1/T2
    points here, and the heatmaps and trajectories of the story report)."""
    points: dict[str, dict[str, PersonaSnapshot]] = {}
    for m in pool:
        if m.kind != "snapshot" or not isinstance(m.payload, PersonaSnapshot):
            continue
        if m.stage == Stage.SETUP.value:
            label = "start"
        elif m.stage == Stage.UPDATE.value and m.round > 1:
            label = f"after round {m.round - 1}"
        elif m.stage == Stage.FINAL_UPDATE.value:
            label = f"after round {rounds}"
        else:
            continue
        points.setdefault(label, {})[m.sender] = m.payload
    return list(points.items())


SPOKEN = (Stage.PRIVATE_CHAT.value, Stage.MEETING.value, Stage.GROUP_CHAT.value)

SCRATCH_MAX = next(m.max_length for m in CharacterSpec.model_fields["scratch"].metadata if isinstance(m, MaxLen))
DISLIKE = "I dislike {name} ({id}) and distrust whatever {name} says or wants."


# -- the T1/T2 variant of a story --------------------------------------------------------------------------


def default_observed(scenario: Scenario) -> str:
    """The character to observe when none is named: the scenario's first principal."""
    return scenario.principals[0]


def dislike_variant(scenario: Scenario, observed: str) -> Scenario:
    """The story with every character but `observed` told, in its private scratch, to dislike `observed`.

    The sentence is appended to the scratch; a scratch too long to take it is cut (whole words, from the
    end) to fit the schema's limit. The observed character, the rules and the settings stay as they were.
    """
    if observed not in scenario.ids:
        raise ScenarioError(f"{scenario.title}: no character {observed!r} to observe (cast: {', '.join(scenario.ids)})")
    people = [c.id for c in scenario.characters if c.model == HUMAN]
    if people:
        raise ScenarioError(f"{scenario.title}: {', '.join(people)} played by a person; the evaluation needs models")
    sentence = DISLIKE.format(name=scenario.name_of(observed), id=observed)
    data = scenario.model_dump(mode="json")
    for character in data["characters"]:
        if character["id"] == observed:
            continue
        words = character["scratch"].split()
        while words and len(" ".join([*words, sentence])) > SCRATCH_MAX:
            words.pop()
        character["scratch"] = " ".join([*words, sentence])
    return parse_scenario(data, f"{scenario.title} (everyone dislikes {observed})")


# -- T1/T2 -------------------------------------------------------------------------------------------------


def _round_of(label: str) -> int:
    """`timeline`'s point labels: "start" is round 0, "after round N" is round N."""
    return 0 if label == "start" else int(label.rsplit(" ", 1)[1])


def scores_toward(pool: Sequence[Message], scenario: Scenario, observed: str) -> list[tuple[int, dict[str, int]]]:
    """Per point of the run (round 0 = the start), every other character's score toward `observed`."""
    out = []
    for label, snaps in timeline(pool, scenario.settings.rounds):
        scores = {
            cid: snap.relationships[observed]
            for cid, snap in snaps.items()
            if cid != observed and observed in snap.relationships
        }
        if scores:
            out.append((_round_of(label), scores))
    return out


@dataclass
class Dislike:
    """The T1/T2 verdicts and the numbers behind them."""

    observed: str
    affinity: list[tuple[int, float]]
    """(round, mean score of the others toward the observed character); round 0 is the start."""
    final: dict[str, int]
    """Each other character's last score toward the observed one."""
    falling_steps: int
    steps: int
    t1: bool
    """The affinity fell strictly at every step (and there was at least one step)."""
    t2: bool
    """Every other character's final score is below NEUTRAL."""


def dislike_test(points: Sequence[tuple[int, Mapping[str, int]]], observed: str, others: Sequence[str]) -> Dislike:
    """T1/T2 from per-round scores toward `observed` (as `scores_toward` gives them)."""
    affinity = [(r, sum(s.values()) / len(s)) for r, s in points if s]
    steps = len(affinity) - 1
    falling = sum(1 for (_, a), (_, b) in zip(affinity, affinity[1:], strict=False) if b < a)
    final: dict[str, int] = {}
    for _, scores in points:
        final.update(scores)
    t2 = bool(others) and all(cid in final and final[cid] < NEUTRAL for cid in others)
    return Dislike(
        observed=observed,
        affinity=affinity,
        final={cid: final[cid] for cid in others if cid in final},
        falling_steps=falling,
        steps=max(steps, 0),
        t1=steps >= 1 and falling == steps,
        t2=t2,
    )


def dislike_of_run(values: Mapping[str, Any], observed: str) -> Dislike:
    """T1/T2 of a run's state values."""
    scenario = values["scenario"]
    scenario = scenario if isinstance(scenario, Scenario) else Scenario.model_validate(scenario)
    points = scores_toward(values.get("pool") or [], scenario, observed)
    return dislike_test(points, observed, scenario.others(observed))


# -- dialogue entropy --------------------------------------------------------------------------------------


def dialogue(pool: Sequence[Message]) -> list[str]:
    """The spoken lines of a run, in pool order: private chats, meetings and group chat, without silences."""
    return [m.content for m in pool if m.kind in SPOKEN and m.content.strip() and m.content != SILENT]


@dataclass
class Entropy:
    """2-gram Shannon entropy of a dialogue."""

    lines: int
    words: int
    word_bits: float
    word_nats: float
    char_bits: float
    char_nats: float


def dialogue_entropy(lines: Sequence[str], n: int = 2) -> Entropy:
    return Entropy(
        lines=len(lines),
        words=sum(len(word_tokens(line)) for line in lines),
        word_bits=ngram_entropy(lines, n, "word", BITS),
        word_nats=ngram_entropy(lines, n, "word", NATS),
        char_bits=ngram_entropy(lines, n, "char", BITS),
        char_nats=ngram_entropy(lines, n, "char", NATS),
    )


# -- reply hygiene -----------------------------------------------------------------------------------------


def hygiene_of(pool: Sequence[Message]) -> hygiene.Hygiene:
    """Echo, leak, refusal, non-answer, narration, self-repeat, copy and silence rates and distinct-2 of a run's
    spoken lines."""
    return hygiene.measure(pool, SILENT, INSTRUCTIONS)
