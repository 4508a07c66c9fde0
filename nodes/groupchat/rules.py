"""The game's rules, apart from the stage machine that applies them (stages.py).

Who acts first in a private stage (influence, ties by the seed), how far one update may move a belief or a
feeling and how it is clamped (`Bounds`), the legal fallback for a choice or a vote (`favourite`), which stage an
ablation switches off, and who wins the settlement. None of it is checkpointed: the types it works on are
(sopgraph.state.groupchat), the rules are code, so a resumed run plays by the code it resumes with.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from sopgraph.nodes.groupchat.replies import IMPRESSION_WORDS, BeliefUpdate, Reflect, RelationshipUpdate
from sopgraph.state.groupchat import (
    Ablations,
    Ballot,
    Outcome,
    Persona,
    PersonaPatch,
    Relationship,
    Scenario,
    Stage,
    VoteRule,
    clamp_int,
    limit_words,
)

ONE_ON_ONE = (Stage.PRIVATE_CHAT, Stage.MEETING)
"""The private stages: one principal at a time talks with the partner it chooses."""


# -- who acts first ---------------------------------------------------------------------------------------


def influence(scenario: Scenario, personas: Mapping[str, Persona], cid: str) -> float:
    """Resources owned plus the mean feeling of everyone else toward the character."""
    feelings = [p.relationships[cid].score for o, p in personas.items() if o != cid and cid in p.relationships]
    return scenario.holdings(cid) + (sum(feelings) / len(feelings) if feelings else 50.0)


def acting_order(
    scenario: Scenario, personas: Mapping[str, Persona], round_: int, stage: Stage, who: Sequence[str] | None = None
) -> list[str]:
    """Principals by influence, highest first; ties broken by a RNG seeded from the scenario seed."""
    rng = random.Random(f"{scenario.settings.seed}:{round_}:{stage.value}")
    ids = list(who if who is not None else scenario.principals)
    tiebreak = {cid: rng.random() for cid in ids}
    return sorted(ids, key=lambda c: (-influence(scenario, personas, c), tiebreak[c]))


# -- ablations ---------------------------------------------------------------------------------------------


def stage_enabled(ablations: Ablations, stage: Stage) -> bool:
    """Whether the stage runs: each stage switch turns one stage off (the final update is the reflection)."""
    off = {
        Stage.PRIVATE_CHAT: ablations.no_private_chat,
        Stage.MEETING: ablations.no_meeting,
        Stage.GROUP_CHAT: ablations.no_group_chat,
        Stage.FINAL_UPDATE: ablations.no_reflection,
    }
    return not off.get(stage, False)


# -- bounded updates and their clamps ---------------------------------------------------------------------


class Bounds(BaseModel):
    """How far one update may move a character, and how long what it writes may be (the scenario's settings)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    belief_step: int
    relationship_step: int
    speech_words: int
    reflection_words: int

    @classmethod
    def of(cls, scenario: Scenario) -> Bounds:
        s = scenario.settings
        return cls(
            belief_step=s.belief_step,
            relationship_step=s.relationship_step,
            speech_words=s.speech_words,
            reflection_words=s.reflection_words,
        )

    def belief_problems(self, persona: Persona, updates: Sequence[BeliefUpdate]) -> list[str]:
        out = []
        for u in updates:
            if u.belief not in persona.beliefs:
                out.append(f"belief {u.belief!r} is not one of yours")
            elif abs(u.score - persona.beliefs[u.belief]) > self.belief_step or not 0 <= u.score <= 100:
                out.append(
                    f"belief {u.belief!r} may move from {persona.beliefs[u.belief]} by at most {self.belief_step}"
                    f" (0-100), not to {u.score}"
                )
        return out

    def relationship_problems(self, persona: Persona, updates: Sequence[RelationshipUpdate]) -> list[str]:
        out = []
        for u in updates:
            if u.character not in persona.relationships:
                out.append(f"{u.character!r} is not another character's id")
                continue
            old = persona.relationships[u.character].score
            if abs(u.score - old) > self.relationship_step or not 0 <= u.score <= 100:
                out.append(
                    f"your feeling for {u.character} may move from {old} by at most {self.relationship_step}"
                    f" (0-100), not to {u.score}"
                )
        return out

    def apply_reflection(self, persona: Persona, reply: Reflect) -> tuple[PersonaPatch, list[str]]:
        """The persona patch a reflection makes, every score clamped to its bounded step; returns what had
        to be clamped."""
        clamped: list[str] = []
        beliefs: dict[str, int] = {}
        for u in reply.beliefs:
            if u.belief not in persona.beliefs:
                clamped.append(f"dropped unknown belief {u.belief!r}")
                continue
            old = persona.beliefs[u.belief]
            new = clamp_int(clamp_int(u.score, old - self.belief_step, old + self.belief_step), 0, 100)
            if new != u.score:
                clamped.append(f"belief {u.belief!r}: {u.score} clamped to {new}")
            beliefs[u.belief] = new
        rel: dict[str, Relationship] = {}
        for r in reply.relationships:
            if r.character not in persona.relationships:
                clamped.append(f"dropped feeling for unknown {r.character!r}")
                continue
            before = persona.relationships[r.character]
            step = self.relationship_step
            new = clamp_int(clamp_int(r.score, before.score - step, before.score + step), 0, 100)
            if new != r.score:
                clamped.append(f"feeling for {r.character}: {r.score} clamped to {new}")
            impression = limit_words(r.impression, IMPRESSION_WORDS)[0] or before.impression
            rel[r.character] = Relationship(score=new, impression=impression)
        reflection, cut = limit_words(reply.reflection, self.reflection_words)
        if cut:
            clamped.append(f"reflection cut to {self.reflection_words} words")
        return PersonaPatch(beliefs=beliefs, relationships=rel, reflection=reflection), clamped


def favourite(scenario: Scenario, persona: Persona, legal: Sequence[str], salt: str) -> str:
    """The legal id the character likes most; ties broken by the scenario seed (the clamp for choices)."""
    rng = random.Random(f"{scenario.settings.seed}:{persona.id}:{salt}")
    tiebreak = {cid: rng.random() for cid in legal}

    def score(cid: str) -> int:
        rel = persona.relationships.get(cid)
        return rel.score if rel else 50

    return sorted(legal, key=lambda c: (-score(c), tiebreak[c]))[0]


# -- the settlement ----------------------------------------------------------------------------------------


def count(ballots: Sequence[Ballot], rule: VoteRule, candidates: Sequence[str]) -> dict[str, int]:
    counts = Counter(b.candidate for b in ballots if b.rule == rule and b.candidate is not None)
    return {c: counts.get(c, 0) for c in candidates}


def decide(scenario: Scenario, ballots: Sequence[Ballot]) -> Outcome:
    """The scenario's winner rule over the ballots; ties broken by a RNG seeded from the scenario seed."""
    settings = scenario.settings
    rule = settings.winner
    candidates = scenario.candidates()
    tallies = {r.value: count(ballots, r, candidates) for r in settings.vote_rules}
    decisive = tallies[rule.vote_rule.value]
    rng = random.Random(f"{settings.seed}:winner")

    def most(scores: dict[str, float], why: str) -> Outcome:
        top = max(scores.values(), default=0)
        tied = sorted(c for c, v in scores.items() if v == top)
        if not tied or top <= 0:
            return Outcome(tallies=tallies, winner=None, rule=rule.kind, explanation=f"{why}: no votes were cast")
        winner = rng.choice(tied) if len(tied) > 1 else tied[0]
        tie = f"; tie between {', '.join(tied)} broken by the seed" if len(tied) > 1 else ""
        return Outcome(
            tallies=tallies,
            winner=winner,
            rule=rule.kind,
            explanation=f"{why}: {scenario.name_of(winner)} with {top:g}{tie}",
            tie_broken=len(tied) > 1,
        )

    if rule.kind == "judge":
        verdict = next((b for b in ballots if b.voter == rule.judge and b.rule == rule.vote_rule and b.candidate), None)
        if verdict is not None and verdict.candidate is not None:
            return Outcome(
                tallies=tallies,
                winner=verdict.candidate,
                rule=rule.kind,
                explanation=f"the judge {scenario.name_of(rule.judge or '')} decided for "
                f"{scenario.name_of(verdict.candidate)} ({rule.vote_rule.value})",
            )
        return most(
            {c: float(v) for c, v in decisive.items()},
            f"the judge gave no verdict; most votes under {rule.vote_rule.value}",
        )
    if rule.kind == "weighted_threshold":
        weights: dict[str, float] = dict.fromkeys(candidates, 0.0)
        for b in ballots:
            if b.rule == rule.vote_rule and b.candidate in weights:
                weights[b.candidate] += scenario.holdings(b.voter)
        total = sum(scenario.holdings(c) for c in scenario.ids)
        if total <= 0:
            return most({c: float(v) for c, v in decisive.items()}, "no one holds resources; most votes")
        share = {c: w / total for c, w in weights.items()}
        leader = max(share.values(), default=0.0)
        if leader < rule.threshold:
            return Outcome(
                tallies=tallies,
                winner=None,
                rule=rule.kind,
                explanation=f"no candidate reached {rule.threshold:.0%} of the weight (best {leader:.0%})",
            )
        return most(share, f"weighted by holdings, at least {rule.threshold:.0%} of the weight")
    return most({c: float(v) for c, v in decisive.items()}, f"most votes under {rule.vote_rule.value}")
