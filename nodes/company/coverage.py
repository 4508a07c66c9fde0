"""Idea fidelity: does a document (PRD, design, plan, code) still speak of what the user asked for?

A cheap, deterministic check: the idea's own content words (its nouns and verbs: "todo", "add", "list",
"finish") must each appear in the document, matched on a crude stem ("finished" covers "finish"). A PRD or
design that leaves some out is asked for again once, naming them; what is still missing after that, and
what the plan and code leave out, is reported as a warning. Words every requirement shares (python,
library, file...) are not the idea and are not checked.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from pydantic import BaseModel

from sopgraph.nodes.company.markdown import markdown
from sopgraph.nodes.llm import ModelGateway

M = TypeVar("M", bound=BaseModel)

STOP_WORDS = frozenset(
    """a about above after again all also an and any are as at be because been before being below between both
    but by can could did do does doing down during each either else even every few for from further get gets
    had has have having he her here how i if in into is it its itself just keep kept let like make makes many
    may me more most much must my need needs new no nor not nothing now of off on once one only or other our
    out over own per please same she should show shown so some such than that the their them then there these
    they this those three through to too two under until up upon us use used uses using very via want was way
    we were what when where which while who why will with within without would you your yours
    app application code command commands file files install installed installs library line main module
    network program programs project py python simple small standard start started starts system terminal
    tool user users""".split()
)
SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ers", "er", "es", "ed", "s")
MAX_TERMS = 12


def stem(word: str) -> str:
    word = word.lower()
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", re.sub(r"([a-z])([A-Z])", r"\1 \2", text).lower())


def idea_terms(idea: str) -> list[str]:
    """The idea's content words, in order of first use (at most MAX_TERMS)."""
    terms: list[str] = []
    seen: set[str] = set()
    for word in _words(idea):
        if len(word) < 3 or word in STOP_WORDS or stem(word) in seen:
            continue
        seen.add(stem(word))
        terms.append(word)
    return terms[:MAX_TERMS]


def missing_terms(terms: list[str], text: str) -> list[str]:
    """The terms the text never mentions (a word of the text with the same stem, or one starting with it)."""
    stems = {stem(w) for w in _words(text)}
    missing = []
    for term in terms:
        root = stem(term)
        if root in stems or any(s.startswith(root) or (len(s) >= 4 and root.startswith(s)) for s in stems):
            continue
        missing.append(term)
    return missing


def coverage_note(what: str, missing: list[str]) -> str:
    return f"idea coverage: the {what} never mentions {', '.join(repr(m) for m in missing)} from the requirement"


def reask(what: str, missing: list[str]) -> str:
    return (
        f"That {what} leaves out these words of the requirement: {', '.join(missing)}. Write it again so that "
        "each of them is covered (a user story, a requirement, a class or a method), keeping the rest."
    )


def structured_covering(
    llm: ModelGateway, schema: type[M], prompt: str, system: str, idea: str, what: str
) -> tuple[M, list[str]]:
    """Ask for a document; if it leaves out words of the idea, ask once more naming them and keep the answer
    that covers more. Returns the document and the idea's words it still leaves out."""
    doc = llm.structured(schema, prompt, system=system)
    terms = idea_terms(idea)
    missing = missing_terms(terms, _text_of(doc))
    if missing and llm.over_budget() is None:
        again = llm.structured(schema, f"{prompt}\n\n{reask(what, missing)}", system=system)
        still = missing_terms(terms, _text_of(again))
        if len(still) < len(missing):
            doc, missing = again, still
    return doc, missing


def _text_of(doc: Any) -> str:
    return markdown(doc)
