"""Reply hygiene: what makes a small model's line unreadable, found, named, repaired and measured.

Seven defects of a spoken line, each checked against what the speaker was shown:

- echo: the reply repeats a run of at least `ECHO_WORDS` words of its prompt (the card, the memory, the
  instruction), as a 0.5B model opening with "Lina Park, at most 60 words. I'm curious..." does;
- leak: the reply carries instruction wording (a fragment of one of the instruction templates in
  `prompts.INSTRUCTIONS`, a word limit, a stage direction) — derived from the templates, so rewording a
  prompt moves the detector with it;
- refusal: the canned "I'm sorry, but I can't assist with that", "I'm afraid I can't help you with that",
  "I'm sorry, but I don't have any information about...", "as an AI";
- non_answer: the line says it has nothing to say ("I don't know what to say next", "I'm not sure what to say");
- narration: stage directions instead of speech ("Aria Voss says,", "Lina Park privately thinks."), or the
  speaker reported in the third person ("Lina Park is curious and honest." said by Lina Park);
- self_repeat: the reply nearly duplicates a line the speaker said earlier;
- copy: the reply nearly duplicates a line somebody else said (that the speaker heard).

A first answer may also be empty (no word at all): a defect of its own, re-asked like the others.

`inspect` finds them; `reask` words a targeted re-ask naming each defect and its evidence; `clean_up` is
the last resort, a repair: it cuts stage directions, puts a third-person report of the speaker in the first
person, cuts the echoed, leaked and non-answering word runs out of the line and keeps the rest of the
speaker's own words, drops refusing, self-repeating and copied sentences, and leaves silence only when fewer
than `OWN_WORDS` of the speaker's own words are left (on the 0.5B model, dropping every sentence with a
defect left nothing in 95% of a story's turns).
`measure` turns a run's pool into per-run rates (echo, leak, refusal, non-answer, narration, self-repeat, copy,
silence, distinct-2), using the `LineCheck` each spoken line carries and re-checking what can be checked from
the pool alone.
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
NON_ANSWER = "non_answer"
NARRATION = "narration"
SELF_REPEAT = "self_repeat"
COPY = "copy"
DEFECTS = (ECHO, LEAK, REFUSAL, NON_ANSWER, NARRATION, SELF_REPEAT, COPY)
"""The defects a spoken line can still have (the report's columns)."""
CUT = (ECHO, LEAK, NON_ANSWER, NARRATION)
"""The defects the repair cuts out of a line word run by word run (the others drop whole sentences)."""
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
_APOLOGY = r"(?:i'?m|i am) (?:so |very |truly )?(?:sorry|afraid)[, ]+(?:but |that )?i "
_ASSIST = (
    r"(?:help|assist|answer|provide|comply|continue|respond|engage|generate|fulfill?|give|share|discuss|talk about"
    r"|participate|complete|role-?play|pretend|do that|do this|say)"
)
_REFUSAL = re.compile(
    _APOLOGY + r"(?:(?:can'?t|cannot|could ?n[o']t|won'?t|am unable to|'m unable to|am not able to|'m not able to)"
    r" (?:really )?" + _ASSIST + r"|(?:don'?t|do not) (?:have|know|understand|feel comfortable))\b"
    r"|can'?t assist|cannot assist|unable to (?:assist|help|comply)"
    r"|\bas an ai\b|\bas a (?:large )?language model\b|\bi'?m (?:just |only )?an ai\b|\bi am (?:just |only )?an ai\b"
    r"|\bi (?:can'?t|cannot) (?:help|assist|do) (?:you )?(?:with )?(?:that|this)\b",
    re.I,
)
_NON_ANSWER = re.compile(
    r"\b(?:i'?m|i am) (?:not sure|unsure|uncertain) (?:of |about )?what (?:to say|i should say|to do|to think|to add"
    r"|happens|is happening)(?: (?:next|now|here))?"
    r"|\bi (?:don'?t|do not|can'?t|cannot) (?:really )?(?:know|tell|think of) what (?:to say|i should say|to do"
    r"|to think|to add|happens|is happening|you mean)(?: (?:next|now|here))?"
    r"|\bi (?:don'?t|do not) know what\b(?=\s*(?:[.!?,;]|$))"
    r"|\bi (?:have|'ve got|'ve) nothing (?:more |else |new )?to (?:say|add)\b"
    r"|\b(?:there is|there's) nothing (?:more |else )?to (?:say|add)\b"
    r"|\bi (?:don'?t|do not) have (?:anything|any information|enough information|an answer)"
    r"(?: (?:more|else|new))?(?: to (?:say|add))?(?: about [^.!?,;]*)?"
    r"|\bi (?:have|'ve) no (?:idea|information|answer)(?=\s*(?:[.!?,;]|$))"
    r"|\bno comment\b|\bi(?:'m| am) (?:at a loss for words|speechless|lost for words)",
    re.I,
)
"""A line that says it has nothing to say: the 0.5B's "I don't know what to say next, because I don't know
what." (the clause is cut by the repair; "I have no idea why you say that" is no non-answer)."""
_SAY_VERBS = (
    "says|said|thinks|thought|asks|asked|replies|replied|answers|answered|adds|added|continues|whispers|notes"
    "|explains|responds|speaks|nods|smiles|writes"
)
_ADVERBS = r"(?:\s+(?:[a-z]+ly|also|still|now|just|then|too|aloud))*"
_NOT_VERBS = frozenset(
    "and or nor but with to of in on at for from by who whom whose which that the a an here there".split()
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
    r"\bmy (private )?thought\s*:",
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


def non_answers(text: str) -> list[tuple[int, int]]:
    """Where a line says it has nothing to say (character offsets)."""
    return [m.span() for m in _NON_ANSWER.finditer(text or "")]


@cache
def _names(cast: tuple[str, ...]) -> str:
    """A regex alternation of the cast's full and first names, longest first (names are matched with their
    capitals: a proper noun, never the word "will" of a character called Will)."""
    names = {n for full in cast for n in (full.strip(), full.strip().split(" ")[0]) if n}
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


_OPENS = r"(?:^|(?<=[.!?:;,])|(?<=[.!?:;,]\s))"
"""Where a stage direction or a report can stand: the start of the line, of a sentence or of a clause."""


@cache
def _direction(cast: tuple[str, ...]) -> re.Pattern[str]:
    """A stage direction: a cast name and a verb of saying standing alone ("Aria Voss says,", "Lina Park
    privately thinks."), never a name inside a sentence ("as Bruno says, minds need bodies")."""
    return re.compile(_OPENS + rf"\s*(?:{_names(cast)})" + _ADVERBS + rf"\s+(?:{_SAY_VERBS})\b\s*(?:[:,]|(?=[.!?;]|$))")


@cache
def _report(name: str) -> re.Pattern[str]:
    """The speaker reported in the third person: its own name as the subject of a sentence or clause ("Lina
    Park is curious and honest."), or its own name's possessive ("Lina Park's note says...")."""
    return re.compile(
        _OPENS + rf"\s*(?P<who>{_names((name,))})(?:(?P<own>'s)\b|(?P<adv>{_ADVERBS})\s+(?P<verb>[a-z]+)\b)"
    )


def directions(text: str, cast: Sequence[str]) -> list[tuple[int, int]]:
    """Where stage directions stand in a line (character offsets)."""
    return [m.span() for m in _direction(tuple(cast)).finditer(text)] if cast else []


def _reports(text: str, name: str) -> list[re.Match[str]]:
    found = _report(name).finditer(text) if name.strip() else ()
    return [m for m in found if m["own"] or m["verb"] not in _NOT_VERBS]


def narration(text: str, name: str, cast: Sequence[str]) -> str:
    """The first stage direction or third-person report of the speaker in a line ('' if none)."""
    cut = directions(text, (name, *cast))
    if cut:
        return text[cut[0][0] : cut[0][1]].strip(" ,:")
    reports = _reports(text, name)
    return reports[0].group(0).strip(" ,:") if reports else ""


_FIRST_PERSON = {"is": "am", "was": "was", "has": "have", "does": "do", "goes": "go"}


def _first_person_verb(verb: str) -> str:
    if verb in _FIRST_PERSON:
        return _FIRST_PERSON[verb]
    if verb.endswith("ies") and len(verb) > 4:
        return verb[:-3] + "y"
    if verb.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return verb[:-2]
    if verb.endswith("s") and not verb.endswith(("ss", "us", "is")):
        return verb[:-1]
    return verb


def first_person(text: str, heard: Heard) -> str:
    """A line without its stage directions, its reports of the speaker put in the first person ("Lina Park is
    curious" -> "I am curious", "Aria Voss's view" -> "My view")."""
    kept = []
    for sentence in _SENTENCE.split(text):
        cut = directions(sentence, (heard.name, *heard.cast))
        for a, b in reversed(cut):
            sentence = sentence[:a] + " " + sentence[b:]
        sentence = _trim(sentence)
        for m in reversed(_reports(sentence, heard.name)):
            start = m.start("who")
            if m["own"]:
                mine = "My" if start == 0 else "my"
            else:
                mine = f"I{m['adv']} {_first_person_verb(m['verb'])}"
            sentence = sentence[:start] + mine + sentence[m.end() :]
        if words(sentence):
            kept.append(_sentence(sentence))
    return " ".join(kept)


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
    if said := non_answers(text):
        found.append(Finding(NON_ANSWER, text[said[0][0] : said[0][1]]))
    if told := narration(text, heard.name, heard.cast):
        found.append(Finding(NARRATION, told))
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
        NON_ANSWER: lambda f: f'"{_quote(f.evidence)}" says nothing: {name} gives a view, a question or an offer',
        NARRATION: lambda f: f'"{_quote(f.evidence)}" is narration: only the words {name} says, as "I"',
        SELF_REPEAT: lambda f: f'{name} already said "{_quote(f.evidence)}": say something new',
        COPY: lambda f: f'{f.who} said "{_quote(f.evidence)}": answer {f.who} instead of repeating it',
        EMPTY: lambda f: f"the line was empty: {name} says something",
    }
    return [say[f.defect](f) for f in findings]


def clean_up(text: str, heard: Heard) -> str:
    """The last resort, a repair: the echoed and leaked word runs cut out of the reply (the rest of each
    sentence kept, debris beside a cut dropped, punctuation and capitals tidied), refusing, self-repeating and
    copied sentences dropped; stage directions cut first and the speaker's reports of itself put in the first
    person. '' when fewer than `OWN_WORDS` of the speaker's own words are left of a reply with a defect; a reply
    without one keeps its words, however few."""
    text = " ".join(text.split())
    repaired = text
    for _ in range(3):  # a cut can join two pieces into a new run (or a report); the second pass cuts that too
        if narration(repaired, heard.name, heard.cast):
            repaired = first_person(repaired, heard)
        repaired = _repair_once(repaired, heard)
        if not any(f.defect in CUT for f in inspect(repaired, heard)):
            break
    else:  # still echoing after three cuts: keep only the sentences without one
        repaired = " ".join(s for s in _SENTENCE.split(repaired) if not any(f.defect in CUT for f in inspect(s, heard)))
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
    cuts = sorted(_echo_spans(text, heard) + _leak_spans(text, heard.templates) + non_answers(text))
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
    non_answer_rate: float
    narration_rate: float
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
    non_answer: int = 0
    narration: int = 0
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
            "non_answer_rate": self.rate(self.non_answer),
            "narration_rate": self.rate(self.narration),
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
    """The hygiene of a run's dialogue. Leaks, refusals, non-answers, self-repeats and copies are re-checked on
    the final lines (a line copies another when it nearly duplicates an earlier line by someone else that its
    speaker could see); echoes need the prompt and narration the speaker's name, so they come from each line's
    `LineCheck`. A turn whose last answer refused, said nothing or narrated counts as such also when it ended
    in silence."""
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
            out.non_answer += bool(check and NON_ANSWER in check.last)
            out.narration += bool(check and NARRATION in check.last)
            continue
        out.repaired += bool(check and check.cleaned)
        out.refusal += refusal(m.content)
        out.non_answer += bool(non_answers(m.content))
        out.narration += bool(check and NARRATION in check.final)
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
