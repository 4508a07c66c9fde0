"""What the user's request spells out about its program: the command line (`python main.py ...`) and the
commands it names. Read by the architect (the one-file rule), the engineer (the entry module's prompt), QA
(command-line tests) and the test run (does the entry module handle those commands?).

Deliberately conservative: a command is read only from a request whose command line names one
(`python main.py add TEXT`), and its siblings only from the same sentence, as clauses of that same shape
(`list prints ...`, `done N marks ...`, `` `remove N` ``). A word read wrongly would send a correct program
to debug, so a request that is not that explicit names no commands.
"""

from __future__ import annotations

import re

from sopgraph.tools.program import ENTRY_STEMS, stem

COMMAND_LINE = re.compile(r"\bpython3?\s+(\S+\.py)\b")
"""A request that spells its command line (`python main.py add TEXT`) gets tests that run that command."""
WORD = re.compile(r"[a-z][a-z0-9_-]*")
"""A command word: lower case, as typed (not a flag, a number, a file name or an upper-case placeholder)."""
PLACEHOLDER = re.compile(r"(?:[A-Z][A-Z0-9_]*|<[^>]+>|\[[A-Z][A-Z0-9_]*\])")
"""An argument in a usage line: TEXT, N, <name>, [N]."""
SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")
CLAUSE = re.compile(r"[,;]|\s(?:and|or)\s")
QUOTES = "`'\"()"
NOT_COMMANDS = frozenset(
    "a an the it its this that these those each every then also which who and or with to in on for of from by as "
    "if when else otherwise all any no not one is are be".split()
)
ONE_FILE_MAX_WORDS = 120
"""The one-file rule (nodes/company/architect.py): a request that spells its command line in at most this many
words is a small idea."""


def spelled_entries(idea: str) -> list[str]:
    """The entry modules (main.py, app.py, ...) whose command line the request spells, in order."""
    found = [m.group(1).strip(QUOTES).lstrip("./") for m in COMMAND_LINE.finditer(idea)]
    return list(dict.fromkeys(p for p in found if stem(p) in ENTRY_STEMS))


def command_line_entry(idea: str, paths: list[str]) -> str | None:
    """The entry module whose command line the request spells out (`python main.py ...`), if it is one of
    the project's entry modules; None otherwise (tests then go through the modules' interfaces)."""
    return next((p for p in spelled_entries(idea) if p in paths), None)


def is_small(idea: str) -> bool:
    """A small idea: it spells its command line (`python main.py ...`) in at most ONE_FILE_MAX_WORDS words."""
    return bool(spelled_entries(idea)) and len(idea.split()) <= ONE_FILE_MAX_WORDS


def _token(text: str) -> str:
    return text.strip().strip(QUOTES).strip()


def command_words(idea: str) -> list[str]:
    """The commands the request names: the word right after `python main.py`, and the sentence's other
    clauses of the same shape (a lower-case word, then an argument placeholder or a verb: `list prints`,
    `done N marks`), e.g. add, list, done, remove for the Makefile's todo list. None unless the command
    line itself names one (`python main.py FILE.csv`, `python main.py --length N` name none)."""
    words: list[str] = []
    for match in COMMAND_LINE.finditer(idea):
        if stem(match.group(1).strip(QUOTES)) not in ENTRY_STEMS:
            continue
        rest = idea[match.end() :]
        end = SENTENCE_END.search(rest)
        clauses = CLAUSE.split(rest[: end.start()] if end else rest)
        first = [_token(t) for t in clauses[0].split()]
        if not first or not WORD.fullmatch(first[0]):
            continue
        words.append(first[0])
        for clause in clauses[1:]:
            tokens = [_token(t) for t in clause.split()]
            tokens = [t for t in tokens if t]
            if len(tokens) < 2 or not WORD.fullmatch(tokens[0]) or tokens[0] in NOT_COMMANDS:
                continue
            after = tokens[1]
            if PLACEHOLDER.fullmatch(after) or (after.isalpha() and after.islower() and after.endswith("s")):
                words.append(tokens[0])
    return list(dict.fromkeys(words))
