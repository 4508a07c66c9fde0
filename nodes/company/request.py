"""What the user's request spells out about its program: the command line (`python main.py ...`), the
commands it names, and the files it keeps its data in. Read by the architect (the one-file rule), the engineer
(the entry module's prompt), QA (command-line tests) and the test run (does the entry module handle those
commands, use that file, and keep what `add` was given for the next `list`?).

Deliberately conservative: a command is read only from a request whose command line names one
(`python main.py add TEXT`), and its siblings only from the same sentence, as clauses of that same shape
(`list prints ...`, `done N marks ...`, `` `remove N` ``). A word read wrongly would send a correct program
to debug, so a request that is not that explicit names no commands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sopgraph.tools.program import ENTRY_STEMS, Recall, stem

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
    return list(dict.fromkeys(word for word, _ in command_usages(idea)))


def _placeholders(tokens: list[str]) -> list[str]:
    """The argument placeholders right after a command word (TEXT, N, <name>), up to the first other word."""
    found: list[str] = []
    for token in tokens:
        if not PLACEHOLDER.fullmatch(token):
            break
        found.append(token.strip("<>[]").upper())
    return found


def command_usages(idea: str) -> list[tuple[str, list[str]]]:
    """Each command the request names (see command_words) with its argument placeholders, as spelled:
    [("add", ["TEXT"]), ("list", []), ("done", ["N"]), ("remove", ["N"])] for the Makefile's todo list."""
    usages: list[tuple[str, list[str]]] = []
    for match in COMMAND_LINE.finditer(idea):
        if stem(match.group(1).strip(QUOTES)) not in ENTRY_STEMS:
            continue
        rest = idea[match.end() :]
        end = SENTENCE_END.search(rest)
        clauses = CLAUSE.split(rest[: end.start()] if end else rest)
        first = [_token(t) for t in clauses[0].split()]
        if not first or not WORD.fullmatch(first[0]):
            continue
        usages.append((first[0], _placeholders(first[1:])))
        for clause in clauses[1:]:
            tokens = [_token(t) for t in clause.split()]
            tokens = [t for t in tokens if t]
            if len(tokens) < 2 or not WORD.fullmatch(tokens[0]) or tokens[0] in NOT_COMMANDS:
                continue
            after = tokens[1]
            if PLACEHOLDER.fullmatch(after) or (after.isalpha() and after.islower() and after.endswith("s")):
                usages.append((tokens[0], _placeholders(tokens[1:])))
    return usages


DATA_FILE = re.compile(
    r"(?<![\w./-])([A-Za-z0-9_][\w-]*(?:\.[\w-]+)*\.(?:json|jsonl|csv|tsv|txt|md|db|sqlite3?|ya?ml|toml|ini|xml|dat|"
    r"pickle|pkl))(?![\w/-]|\.\w)"
)
"""A file name with a data extension: todo.json, notes.csv (not a module: .py is no data)."""
KEEPS = re.compile(r"(?:kept|keeps?|stored|stores?|persist(?:ed|s)?|held|holds?|remembered|remembers?|lives?)")
"""Verbs of keeping. Not save or write: "saves the report in report.csv" may be an export, never read back."""
INTO = re.compile(r"(?:in|into|inside|at)")
KEEP_WINDOW = 10
"""A keeping verb at most this many words before the file name, in the same clause, and `in` among its last
four: "a todo list kept in todo.json", "notes stored in a file called notes.csv"."""


def data_files(idea: str) -> list[str]:
    """The files the request says its data is kept in ("a todo list kept in todo.json"), in order. A file
    the program only reads (`python main.py FILE.csv`, "reads data.csv") or a placeholder (FILE.json) is
    none: the test run demands that the program both read and write each of these."""
    found: list[str] = []
    for match in DATA_FILE.finditer(idea):
        name = match.group(1)
        if stem(name).isupper():  # FILE.csv: an argument, not a file of the program's own
            continue
        before = CLAUSE.split(SENTENCE_END.split(idea[: match.start()])[-1])[-1]
        words = [w.strip(QUOTES + ":").lower() for w in before.split()[-KEEP_WINDOW:]]
        if any(KEEPS.fullmatch(w) for w in words) and any(INTO.fullmatch(w) for w in words[-4:]):
            found.append(name)
    return list(dict.fromkeys(found))


ADDS = frozenset({"add", "new", "create", "append", "push", "put", "note", "save", "record", "track", "log"})
"""Commands that give the program something to keep."""
SHOWS = frozenset({"list", "ls", "show", "all", "view", "print", "items", "history"})
"""Commands that print what the program keeps."""
TEXTS = frozenset(
    "TEXT ITEM TASK NOTE TITLE NAME MESSAGE DESCRIPTION WORD WORDS CONTENT ENTRY TODO STRING LINE THING LABEL".split()
)
"""Placeholders of free text (not N, ID, AMOUNT: a number the program may reject or reformat)."""
RECALL_TEXT = "water the plants"
"""What the start check adds, then expects to see listed."""


def recall(idea: str) -> Recall | None:
    """The session that shows whether the program keeps what it is told between two runs, when the request
    spells both commands: `add TEXT` (one free-text argument) and `list` (none); else None."""
    usages = command_usages(idea)
    add = next((w for w, args in usages if w in ADDS and len(args) == 1 and args[0] in TEXTS), None)
    show = next((w for w, args in usages if w in SHOWS and not args), None)
    if add is None or show is None:
        return None
    return Recall(steps=((add, RECALL_TEXT), (show,)), text=RECALL_TEXT)


@dataclass(frozen=True)
class Spelled:
    """What the request spells out that the test run checks the program against: the entry module of its
    command line (None when it spells none), the commands that module handles, the files the program keeps
    its data in, and the session that shows whether it keeps what `add` was given for the next `list`."""

    entry: str | None
    commands: list[str]
    stores: list[str]
    recall: Recall | None


def spelled(idea: str, paths: list[str]) -> Spelled | None:
    """What the test run checks of a project with these `paths` against the request `idea`, or None when the
    request spells nothing checkable (the commands and the recall need its command line's entry module)."""
    entry = command_line_entry(idea, paths)
    commands = command_words(idea) if entry is not None else []
    found = Spelled(entry, commands, data_files(idea), recall(idea) if entry is not None else None)
    return found if found.commands or found.stores or found.recall else None
