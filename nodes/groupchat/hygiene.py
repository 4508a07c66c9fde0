"""Reply hygiene: what makes a small model's line unreadable, found, named, repaired and measured.

Five defects of a spoken line, each checked against what the speaker was shown:

- echo: the reply repeats a run of at least `ECHO_WORDS` words of its prompt (the card, the memory, the
  instruction), as a 0.5B model opening with "Lina Park, at most 60 words. I'm curious..." does;
- leak: the reply carries instruction wording (a fragment of one of the instruction templates in
  `prompts.INSTRUCTIONS`, a word limit, a stage direction) — derived from the templates, so rewording a
  prompt moves the detector with it;
- refusal: the canned "I'm sorry, but I can't assist with that";
- self_repeat: the reply nearly duplicates a line the speaker said earlier;
- copy: the reply nearly duplicates a line somebody else said (that the speaker heard).

A first answer may also be empty (no word at all): a defect of its own, re-asked like the others.

`inspect` finds them; `reask` words a targeted re-ask naming each defect and its evidence; `clean_up` is
the last resort, a repair: it cuts the echoed and leaked word runs out of the line and keeps the rest of the
speaker's own words, drops refusing, self-repeating and copied sentences, and leaves silence only when fewer
than `OWN_WORDS` of the speaker's own words are left (on the 0.5B model, dropping every sentence with a
defect left nothing in 95% of a story's turns).
`measure` turns a run's pool into per-run rates (echo, leak, refusal, self-repeat, copy, silence, distinct-2),
using the `LineCheck` each spoken line carries and re-checking what can be checked from the pool alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from functools import cache
from typing import TypedDict

from sopgraph.state.groupchat import LineCheck, Stage
from sopgraph.state.pool import Message

ECHO = "echo"
LEAK = "leak"
REFUSAL = "refusal"
SELF_REPEAT = "self_repeat"
COPY = "copy"
DEFECTS = (ECHO, LEAK, REFUSAL, SELF_REPEAT, COPY)
"""The defects a spoken line can still have (the report's columns)."""
EMPTY = "empty"
"""A first answer without a single word: re-asked; as a final line it is silence, counted as such."""

ECHO_WORDS = 6
"""A shared run of this many words with the prompt is an echo (a name plus a few words is not)."""
OWN_WORDS = 4
"""A repaired line with fewer of the speaker's own words than this (names not counted) is silence."""
FRAGMENT_WORDS = 3
"""A piece of a sentence left beside a cut with fewer words than this is debris ("I believe", a name)."""
NEAR = 0.5
"""Share of a line's word 3-grams found in another line above which the line is a near-duplicate."""
SPOKEN = (Stage.PRIVATE_CHAT.value, Stage.MEETING.value, Stage.GROUP_CHAT.value)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_REFUSAL = re.compile(
    r"(i'?m|i am) (sorry|afraid)[, ]+(but )?i (can'?t|cannot|am unable|'m unable)|can'?t assist|cannot assist"
    r"|unable to (assist|help|comply)|as an ai\b|i can'?t (help|do) (with )?that|i cannot (help|do) (with )?that",
    re.I,
)
_GENERIC_LEAKS = (
    r"\bat most \d+ words\b",
    r"\b(in|within) \d+ words\b",
    r"\bin character\b",
    r"\bcontinue the story\b",
    r"\(id: [a-z0-9_]+\)",
    r"\bround \d+ of \d+\b",
    r"\bsub-round \d+\b",
    r"\b(speech|thought|summary|perception|choice|reflect|vote) tool\b",
    r"\b[A-Z][a-z]+(?: [A-Z][a-z]+)?'s (thought|reply|opening words|line|words)\s*:",
)


def words(text: str) -> list[str]:
    return [m.group(0).lower() for m in _WORD.finditer(text)]


def grams(tokens: Sequence[str], n: int = 3) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def shared_run(reply: Sequence[str], source: Sequence[str], at_least: int) -> list[str]:
    """The longest run of consecutive words the reply shares with the source, if at least `at_least` long."""
    if len(reply) < at_least or len(source) < at_least:
        return []
    match = SequenceMatcher(None, reply, source, autojunk=False).find_longest_match()
    return list(reply[match.a : match.a + match.size]) if match.size >= at_least else []


def near_duplicate(line: str, other: str) -> bool:
    """Most of `line` is found in `other` (3-gram containment), all of a longer `other` is found in `line`, or
    the two are the same short line."""
    a, b = words(line), words(other)
    if not a or not b:
        return False
    if len(a) < 5:
        return a == b
    mine, theirs = grams(a), grams(b)
    shared = len(mine & theirs)
    return shared / len(mine) >= NEAR or (len(theirs) >= 4 and shared == len(theirs))


def refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text or ""))


@cache
def _leak_patterns(templates: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """Literal fragments of the instruction templates (three words or more), and the generic leaks."""
    out = [re.compile(p, re.I) for p in _GENERIC_LEAKS]
    for template in templates:
        for chunk in re.split(r"\{[^}]*\}", template):
            chunk = chunk.strip(" .,:;\n")
            if len(words(chunk)) >= 3:
                out.append(re.compile(r"\b" + r"\W+".join(map(re.escape, words(chunk))) + r"\b", re.I))
    return tuple(out)


def leaks(text: str, templates: Sequence[str] = ()) -> list[str]:
    """The instruction wording found in a reply."""
    found = []
    for pattern in _leak_patterns(tuple(templates)):
        if match := pattern.search(text):
            found.append(match.group(0))
    return found


def _leak_spans(text: str, templates: Sequence[str]) -> list[tuple[int, int]]:
    """Where instruction wording stands in a reply (character offsets), every occurrence."""
    return [m.span() for pattern in _leak_patterns(tuple(templates)) for m in pattern.finditer(text)]


@dataclass(frozen=True)
class Finding:
    defect: str
    evidence: str
    """The echoed or leaked words, the repeated line, or the refusal."""
    who: str = ""
    """Whose line was copied (a name), for `copy`."""


@dataclass(frozen=True)
class Heard:
    """What a speaker's line is checked against."""

    name: str
    prompt: Sequence[str] = ()
    """Prompt text that is not dialogue: the card, the memory, the instruction."""
    own: Sequence[str] = ()
    """The speaker's own earlier lines."""
    others: Sequence[tuple[str, str]] = ()
    """(name, line) of other speakers' lines the speaker heard."""
    templates: Sequence[str] = ()
    """The instruction templates whose wording must not appear in a reply."""
    listener: str = ""
    """Whom the line is for, as the re-ask names them (a name, or the whole group)."""
    cast: Sequence[str] = ()
    """Everybody's names: a repaired line's own words do not count them."""


def inspect(text: str, heard: Heard) -> list[Finding]:
    """Every defect of a reply, with its evidence (at most one finding per defect); an empty reply has only
    that defect."""
    if not words(text):
        return [Finding(EMPTY, "")]
    found: list[Finding] = []
    if refusal(text):
        found.append(Finding(REFUSAL, text[:80]))
    if leaked := leaks(text, heard.templates):
        found.append(Finding(LEAK, leaked[0]))
    tokens = words(text)
    name = set(words(heard.name))
    for source in heard.prompt:
        run = shared_run(tokens, words(source), ECHO_WORDS)
        if run and not set(run) <= name:
            found.append(Finding(ECHO, " ".join(run)))
            break
    if line := next((o for o in reversed(heard.own) if near_duplicate(text, o)), None):
        found.append(Finding(SELF_REPEAT, line))
    if hit := next(((who, o) for who, o in reversed(heard.others) if near_duplicate(text, o)), None):
        found.append(Finding(COPY, hit[1], who=hit[0]))
    return found


def _quote(text: str, n: int = 12) -> str:
    cut = text.split()
    return " ".join(cut[:n]) + ("..." if len(cut) > n else "")


def reask(findings: Iterable[Finding], name: str) -> list[str]:
    """One problem per defect, naming it and its evidence, for the re-ask (whose closing line,
    `prompts.RESAY`, asks for the character's own words)."""
    say = {
        ECHO: lambda f: f'do not repeat the words "{_quote(f.evidence)}"',
        LEAK: lambda f: f'"{f.evidence}" is an instruction, not something {name} says aloud',
        REFUSAL: lambda f: f"a refusal is not part of the story: {name} always answers",
        SELF_REPEAT: lambda f: f'{name} already said "{_quote(f.evidence)}": say something new',
        COPY: lambda f: f'{f.who} said "{_quote(f.evidence)}": answer {f.who} instead of repeating it',
        EMPTY: lambda f: f"the line was empty: {name} says something",
    }
    return [say[f.defect](f) for f in findings]


def clean_up(text: str, heard: Heard) -> str:
    """The last resort, a repair: the echoed and leaked word runs cut out of the reply (the rest of each
    sentence kept, debris beside a cut dropped, punctuation and capitals tidied), refusing, self-repeating and
    copied sentences dropped. '' when fewer than `OWN_WORDS` of the speaker's own words are left of a reply
    with a defect; a reply without one keeps its words, however few."""
    text = " ".join(text.split())
    repaired = text
    for _ in range(3):  # a cut can join two pieces into a new run; the second pass cuts that too
        repaired = _repair_once(repaired, heard)
        if not any(f.defect in (ECHO, LEAK) for f in inspect(repaired, heard)):
            break
    else:  # still echoing after three cuts: keep only the sentences without one
        repaired = " ".join(
            s for s in _SENTENCE.split(repaired) if not any(f.defect in (ECHO, LEAK) for f in inspect(s, heard))
        )
    if inspect(text, heard) and len(own_words(repaired, heard)) < OWN_WORDS:
        return ""
    return repaired


def own_words(text: str, heard: Heard) -> list[str]:
    """The words of a line that are not somebody's name (or a name's possessive)."""
    names = {w for n in (heard.name, *heard.cast, *(who for who, _ in heard.others)) for w in words(n)}
    return [w for w in words(text) if w.removesuffix("'s") not in names]


def _echo_spans(text: str, heard: Heard) -> list[tuple[int, int]]:
    """Every run of `ECHO_WORDS` or more words the reply shares with one of its prompt's parts (character
    offsets), longest first, each word in at most one run; a run of the speaker's name alone is none."""
    found = list(_WORD.finditer(text))
    masked: list[str | None] = [m.group(0).lower() for m in found]
    name = set(words(heard.name))
    spans = []
    for source in heard.prompt:
        said = words(source)
        while True:
            match = SequenceMatcher(None, masked, said, autojunk=False).find_longest_match()
            if match.size < ECHO_WORDS:
                break
            run = masked[match.a : match.a + match.size]
            masked[match.a : match.a + match.size] = [None] * match.size
            if not set(run) <= name:
                spans.append((found[match.a].start(), found[match.a + match.size - 1].end()))
    return spans


def _repair_once(text: str, heard: Heard) -> str:
    cuts = sorted(_echo_spans(text, heard) + _leak_spans(text, heard.templates))
    kept: list[str] = []
    start = 0
    for sentence in _SENTENCE.split(text):
        begin = text.index(sentence, start)
        start = end = begin + len(sentence)
        inside = [(max(a, begin), min(b, end)) for a, b in cuts if a < end and b > begin]
        if inside:
            pieces, at = [], begin
            for a, b in inside:
                pieces.append(text[at:a])
                at = max(at, b)
            pieces.append(text[at:end])
            last = len(pieces) - 1
            pieces = [_unhang(p, before=i > 0, after=i < last) for i, p in enumerate(pieces)]
            sentence = _sentence(", ".join(p for p in pieces if len(own_words(p, heard)) >= FRAGMENT_WORDS))
        if len(words(sentence)) < 2 or refusal(sentence) or any(near_duplicate(sentence, k) for k in kept):
            continue
        if any(f.defect in (SELF_REPEAT, COPY) for f in inspect(sentence, heard)):
            continue
        kept.append(sentence)
    return " ".join(kept)


_STRAY = " ,;:.-–—"


def _trim(piece: str) -> str:
    """A piece of a sentence without stray punctuation at its edges or before a mark."""
    piece = re.sub(r"\s+([,;:.!?])", r"\1", " ".join(piece.split()))
    piece = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", piece)
    return re.sub(r"[,;:]\s*([.!?])", r"\1", piece).strip(_STRAY)


_HANGS_AFTER = frozenset(
    "a an the to of and or but that which who whom whose is are was were be been am do does with for in on at by as "
    "than because so if my your our their his her its this these those about from into will would can could should "
    "must not very also just still even really i we he she they".split()
)
"""Words a piece of a sentence cannot end on when a cut took what followed them ("I want to", "I believe that",
"and I am also" as the 0.5B left it)."""
_HANGS_BEFORE = frozenset("and or but so because that which who whom than as to of then".split())
"""Words a piece cannot start on when a cut took what came before them ("and that humans stay special")."""


def _unhang(piece: str, before: bool, after: bool) -> str:
    """A piece of a sentence without the words left hanging at an edge where a cut was made."""
    piece = _trim(piece)
    while before and (m := re.match(r"[A-Za-z']+", piece)) and m.group(0).lower() in _HANGS_BEFORE:
        piece = _trim(piece[m.end() :])
    while after and (m := re.search(r"[A-Za-z']+$", piece)) and m.group(0).lower() in _HANGS_AFTER:
        piece = _trim(piece[: m.start()])
    return piece


def _sentence(piece: str) -> str:
    """A trimmed piece as a sentence: a capital first, a full stop last when the cut took its own."""
    piece = _trim(piece)
    if not piece:
        return ""
    if piece[-1] not in "!?\"'":
        piece += "."
    return piece[0].upper() + piece[1:]


# -- a run's rates ------------------------------------------------------------------------------------------


class Rates(TypedDict):
    """The rates a run reports (eval result lines spread them into their own fields, so the keys are typed)."""

    echo_rate: float
    leak_rate: float
    echo_leak_rate: float
    refusal_rate: float
    self_repeat_rate: float
    copy_rate: float
    silence_rate: float
    distinct_2: float


@dataclass
class Hygiene:
    """Per-run rates over spoken turns (silences included in the denominator)."""

    turns: int = 0
    silent: int = 0
    echo: int = 0
    leak: int = 0
    refusal: int = 0
    self_repeat: int = 0
    copy: int = 0
    echo_or_leak: int = 0
    first_defects: dict[str, int] = field(default_factory=dict)
    """Defects of the first answers, before any re-ask or clean-up (from the lines' checks)."""
    reasked: int = 0
    cleaned: int = 0
    repaired: int = 0
    """Cleaned lines that still said something (the rest of the cleaned lines are silences)."""
    distinct_2: float = 0.0

    def rate(self, count: int) -> float:
        return round(count / self.turns, 4) if self.turns else 0.0

    def rates(self) -> Rates:
        return {
            "echo_rate": self.rate(self.echo),
            "leak_rate": self.rate(self.leak),
            "echo_leak_rate": self.rate(self.echo_or_leak),
            "refusal_rate": self.rate(self.refusal),
            "self_repeat_rate": self.rate(self.self_repeat),
            "copy_rate": self.rate(self.copy),
            "silence_rate": self.rate(self.silent),
            "distinct_2": round(self.distinct_2, 4),
        }

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), **self.rates()}


def distinct(lines: Sequence[str], n: int = 2) -> float:
    """distinct-n: unique word n-grams over all word n-grams of the lines (0 without any)."""
    total: list[tuple[str, ...]] = []
    for line in lines:
        tokens = words(line)
        total += [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(total)) / len(total) if total else 0.0


def measure(pool: Sequence[Message], silent: str, templates: Sequence[str] = ()) -> Hygiene:
    """The hygiene of a run's dialogue. Leaks, refusals, self-repeats and copies are re-checked on the final
    lines (a line copies another when it nearly duplicates an earlier line by someone else that its speaker
    could see); echoes need the prompt, so they come from each line's `LineCheck`."""
    out = Hygiene()
    said: list[Message] = []
    for m in pool:
        if m.kind not in SPOKEN:
            continue
        out.turns += 1
        check = m.payload if isinstance(m.payload, LineCheck) else None
        if check is not None:
            for defect in check.first:
                out.first_defects[defect] = out.first_defects.get(defect, 0) + 1
            out.reasked += check.reasks > 0
            out.cleaned += check.cleaned
        if m.content == silent or not m.content.strip():
            out.silent += 1
            out.refusal += bool(check and REFUSAL in check.last)
            continue
        out.repaired += bool(check and check.cleaned)
        out.refusal += refusal(m.content)
        leaked, echoed = bool(leaks(m.content, templates)), bool(check and ECHO in check.final)
        out.leak += leaked
        out.echo += echoed
        out.echo_or_leak += leaked or echoed
        out.self_repeat += any(near_duplicate(m.content, o.content) for o in said if o.sender == m.sender)
        out.copy += any(
            near_duplicate(m.content, o.content)
            for o in said
            if o.sender != m.sender and (o.to_everyone or m.sender in o.participants())
        )
        said.append(m)
    out.distinct_2 = distinct([m.content for m in said])
    return out
