"""The program guards the company's test run applies before any test: parsed only, one line per problem."""

from __future__ import annotations

from pathlib import Path

from sopgraph.tools.program import is_test_code, static_problems

TODO = "class Todo:\n    pass\n\n\ndef add(items, text):\n    items.append(text)\n"


def test_a_sound_project_has_no_problems() -> None:
    main = "import sys\nfrom todo import Todo, add\n\n\nif __name__ == '__main__':\n    add([], sys.argv[1])\n"
    assert static_problems({"todo.py": TODO, "main.py": main, "tests/test_todo.py": "import pytest\n"}) == []


def test_test_code_self_imports_missing_names_and_packages_are_named() -> None:
    problems = static_problems(
        {
            "todo.py": "import pytest\nfrom todo import add\n\n\ndef test_add():\n    assert add\n",
            "main.py": "import requests\nfrom todo import Todo, remove\nfrom todo import add\n",
            "broken.py": "def f(:\n",
        }
    )
    assert any(p.startswith("todo.py is test code") and "imports pytest" in p for p in problems)
    assert any(p.startswith("todo.py imports itself (line 2)") for p in problems)
    assert any(p.startswith("main.py imports `requests` (line 1)") for p in problems)
    assert any(p.startswith("main.py imports Todo, remove from todo.py (line 2)") for p in problems)
    assert not any("imports add from" in p for p in problems)  # a name todo.py binds, even by an import
    assert any(p.startswith("broken.py does not parse") for p in problems)


def test_a_reply_that_is_a_test_file_is_told_from_a_program() -> None:
    assert is_test_code("from todo import add\n\n\ndef test_add():\n    assert add([], 'x') is None\n")
    assert is_test_code(TODO) is None
    helpers = "def test_connection(host):\n    return True\n\n\ndef a():\n    pass\n\n\ndef b():\n    pass\n"
    assert is_test_code(helpers) is None  # one helper named test_... among program functions


def test_idea_terms_and_what_a_document_leaves_out() -> None:
    from sopgraph.nodes.company.coverage import idea_terms, missing_terms

    idea = "A command-line todo list: add, list, finish and remove todos. Use only the Python standard library."
    assert idea_terms(idea) == ["todo", "list", "add", "finish", "remove"]
    prd = "Users add todos, listing them; finished todos are marked done."
    assert missing_terms(idea_terms(idea), prd) == ["remove"]
    assert missing_terms(["remove"], "def remove_todo(index): ...") == []  # identifiers count as words


# -- the request's commands and the test files' guards (#12) ----------------------------------------------

MAKEFILE_IDEA = next(
    line.split("?=", 1)[1].strip()
    for line in (Path(__file__).resolve().parent.parent / "Makefile").read_text().splitlines()
    if line.startswith("IDEA ?=")
)


def test_the_commands_a_request_names() -> None:
    from sopgraph.nodes.company.request import command_words, is_small, spelled_entries

    assert command_words(MAKEFILE_IDEA) == ["add", "list", "done", "remove"]
    backticked = (
        "A todo list: `python main.py add TEXT` adds an item, `list` prints the items, `done N` marks item N "
        "done and `remove N` deletes it. Keep it small and start it with `python main.py`."
    )
    assert command_words(backticked) == ["add", "list", "done", "remove"]
    for names_none in (
        "a command-line calculator: python main.py A B prints = and the sum of A and B",
        "`python main.py --length N` with optional `--digits` and `--symbols` prints a password, strong with "
        "digits and symbols",
        "`python main.py FILE.json` reads a document; list items use their index as the key",
        "a command-line calculator",
    ):
        assert command_words(names_none) == [], names_none
    assert spelled_entries("run ./app.py or `python main.py`; python todo.py is not an entry") == ["main.py"]
    assert spelled_entries("python app.py serve, then python main.py list") == ["app.py", "main.py"]
    assert is_small(MAKEFILE_IDEA) and not is_small("a command-line calculator")
    assert not is_small(MAKEFILE_IDEA + " and more" * 60)  # over 120 words: not a small idea


def test_an_entry_module_that_handles_no_command_is_told_from_one_that_does() -> None:
    from sopgraph.tools.program import missing_commands

    commands = ["add", "list", "done", "remove"]
    copied = (  # what the 0.5B wrote as main.py: the library's class again, the commands as methods only
        '"""Add, list, done and remove todos."""\n\n\nclass TodoList:\n    def add(self, text):\n        pass\n\n'
        "    def list(self):\n        pass\n\n    def done(self, n):\n        pass\n\n    def remove(self, n):\n"
        "        pass\n"
    )
    assert missing_commands(copied, commands) == commands
    dispatch = (
        "import sys\ncommand = sys.argv[1]\nif command == 'add':\n    pass\nelif command in ('list', 'ls'):\n    pass\n"
    )
    assert missing_commands(dispatch, commands) == ["done", "remove"]
    parser = (
        "import argparse\nsub = argparse.ArgumentParser().add_subparsers(dest='cmd')\n"
        "for name in ('add', 'list'):\n    sub.add_parser(name)\nsub.add_parser('done')\n"
        "match 1:\n    case 'remove':\n        pass\n"
    )
    assert missing_commands(parser, commands) == []
    assert missing_commands("import argparse\np = argparse.ArgumentParser()\np.add_argument('--add')\n", ["add"]) == []
    assert missing_commands("def f(:\n", commands) == []  # a parse failure is its own problem
    # make demo on the 0.5B: a positional command whose choices name mark, not done; "done" is only a value
    demo = (
        "import argparse\np = argparse.ArgumentParser()\n"
        "p.add_argument('command', choices=['add', 'list', 'mark', 'remove'])\nitems = ['done']\n"
    )
    assert missing_commands(demo, commands) == ["done"]
    assert missing_commands(demo.replace("'mark'", "'done'"), commands) == []
    other = "import sys\nimport argparse\nargparse.ArgumentParser().add_argument('--when', choices=['now'])\n"
    assert missing_commands(other + "if sys.argv[1] == 'done':\n    pass\n", ["done"]) == []  # other choices


def test_a_test_files_own_cli_fixture_is_removed_and_its_wrong_imports_are_named() -> None:
    from sopgraph.nodes.company import qa
    from sopgraph.tools.program import fixture_names, problems_in_tests, without_definitions

    assert qa.PROVIDED == fixture_names(qa.CONFTEST.format(entry="main.py")) == frozenset({"cli"})
    test = (
        "import subprocess\n\nimport pytest\nfrom main import main\n\n\n@pytest.fixture\ndef cli():\n"
        "    return lambda *a: subprocess.run(['python', 'main.py', *a])\n\n\ncli_name = 'x'\n\n\n"
        "def test_add(cli):\n    assert cli('add', 'milk').returncode == 0\n"
    )
    cleaned, removed = without_definitions(test, frozenset({"cli"}))
    assert removed == ["cli"] and "def cli" not in cleaned and "@pytest.fixture" not in cleaned
    assert "def test_add(cli):" in cleaned and "cli_name = 'x'" in cleaned and "from main import main" in cleaned
    assert without_definitions(cleaned, frozenset({"cli"})) == (cleaned, [])

    program = "import sys\n\n\ndef run(argv):\n    return 0\n"
    problems = problems_in_tests(
        {"main.py": program, "tests/test_main.py": cleaned, "tests/conftest.py": "import pytest\n"}
    )
    assert problems == ["tests/test_main.py imports main from main.py (line 4), which main.py does not define"]
    other = "import todo_list\nfrom conftest import cli\nfrom main import run\n\n\ndef test_x():\n    pass\n"
    problems = problems_in_tests({"main.py": program, "tests/test_x.py": other, "tests/conftest.py": ""})
    assert problems == [
        "tests/test_x.py imports `todo_list` (line 1), which is neither a module of this project nor in the "
        "standard library"
    ]


# -- the files a request keeps its data in, and a program that forgets (#12) ----------------------------------


def test_the_data_files_and_the_recall_session_a_request_spells() -> None:
    from sopgraph.nodes.company.request import command_usages, data_files, recall, spelled
    from sopgraph.tools.program import Recall

    assert command_usages(MAKEFILE_IDEA) == [("add", ["TEXT"]), ("list", []), ("done", ["N"]), ("remove", ["N"])]
    assert data_files(MAKEFILE_IDEA) == ["todo.json"]
    assert recall(MAKEFILE_IDEA) == Recall(steps=(("add", "water the plants"), ("list",)), text="water the plants")
    journal = "Entries are stored in a file called journal.txt. `python main.py note <text>` adds one, `show` lists"
    assert data_files(journal) == ["journal.txt"] and recall(journal) == Recall(
        steps=(("note", "water the plants"), ("show",)), text="water the plants"
    )
    assert data_files("a CLI that keeps scores in scores.json and reads its options from settings.ini") == [
        "scores.json"
    ]
    for keeps_none in (
        "`python main.py FILE.csv` prints a summary of every column",  # an argument, not the program's file
        "reads data.csv and saves the report in report.csv",  # an export: never read back
        "keep `todo.json` tidy",
        "notes are kept in memory",
    ):
        assert data_files(keeps_none) == [], keeps_none
    # `add N` takes a number, `list` an argument: no recall session is spelled
    assert recall("python main.py add N adds N to the total, list shows it") is None
    assert recall("python main.py add TEXT adds a line, list DATE prints that day's lines") is None
    checks = spelled(MAKEFILE_IDEA, ["main.py"])
    assert checks is not None and checks.entry == "main.py" and checks.stores == ["todo.json"] and checks.recall
    assert spelled("a calculator: python main.py A B prints the sum", ["main.py"]) is None
    kept = spelled("a diary kept in diary.md", ["diary.py"])  # no command line: the store is still checked
    assert kept is not None and (kept.entry, kept.stores, kept.recall) == (None, ["diary.md"], None)


def test_a_program_that_never_opens_reads_or_writes_its_data_file_is_told_what_it_lacks() -> None:
    from sopgraph.nodes.company.qa import store_problem
    from sopgraph.tools.program import file_use

    memory = "items = []\n\n\ndef add(text):\n    items.append(text)\n"
    assert file_use({"main.py": memory}, "todo.json") == ([], False, False)
    assert store_problem("main.py", {"main.py": memory}, "todo.json") == (
        "main.py never opens todo.json, so nothing the user adds is kept between two commands: load it at start, "
        "save it after every change"
    )
    write_only = "import json\n\n\ndef save(items):\n    with open('todo.json', 'w') as f:\n        json.dump(items, f)"
    assert file_use({"main.py": write_only}, "todo.json") == (["main.py"], False, True)
    problem = store_problem("main.py", {"main.py": write_only}, "todo.json")
    assert problem is not None and problem.startswith(
        "main.py never reads todo.json back, so every command starts from nothing: load it at start"
    )
    read_only = "import json\nfrom pathlib import Path\nITEMS = json.loads(Path('data/todo.json').read_text())\n"
    assert file_use({"store.py": read_only}, "todo.json") == (["store.py"], True, False)
    problem = store_problem("main.py", {"main.py": "import store\n", "store.py": read_only}, "todo.json")
    assert problem is not None and problem.startswith("store.py never writes todo.json")  # the module naming it
    both = "import json\nPATH = 'todo.json'\n\n\ndef load():\n    with open(PATH) as f:\n        return json.load(f)\n"
    both += "\n\ndef save(items):\n    with open(PATH, mode='w') as f:\n        f.write(json.dumps(items))\n"
    assert file_use({"main.py": both}, "todo.json") == (["main.py"], True, True)
    assert store_problem("main.py", {"main.py": both}, "todo.json") is None
    sqlite = "import sqlite3\nDB = sqlite3.connect('notes.db')\n"
    assert file_use({"main.py": sqlite}, "notes.db") == (["main.py"], True, True)
    appended = "def log(line):\n    with open(f'{NAME}.log', 'a') as f:\n        print(line, file=f)\n"
    assert file_use({"main.py": appended}, "x.log") == ([], False, True)


def test_the_start_check_runs_add_then_list_and_reports_a_program_that_forgets(tmp_path: Path) -> None:
    from sopgraph.tools.program import Recall, check_program

    keeps = (
        "import sys\nfrom pathlib import Path\nSTORE = Path('todo.txt')\n"
        "if __name__ == '__main__':\n    args = sys.argv[1:]\n"
        "    if args[:1] == ['add']:\n        STORE.open('a').write(args[1] + '\\n')\n"
        "    elif args[:1] == ['list']:\n        print(STORE.read_text() if STORE.exists() else '')\n"
    )
    forgets = keeps.replace("STORE.open('a').write(args[1] + '\\n')", "print('added', args[1])")
    session = Recall(steps=(("add", "water the plants"), ("list",)), text="Water the plants")
    for name, code in (("keeps", keeps), ("forgets", forgets)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text(code)
    assert check_program(tmp_path / "keeps", recall=session).ok
    check = check_program(tmp_path / "forgets", recall=session)
    assert check.starts and not check.ok
    assert check.problems == [
        "main.py does not keep what a command is given for the next run: in one folder, "
        "`python main.py add 'water the plants'` (exit 0, printed 'added water the plants') then "
        "`python main.py list` (exit 0, printed nothing); the last does not show 'Water the plants'"
    ]
    assert check_program(tmp_path / "forgets").ok  # asked nothing, it passes


def test_an_arbitration_answer_can_blame_both_sides() -> None:
    from sopgraph.state.company import Arbitration

    assert Arbitration.model_validate({"wrong": "Both"}).wrong == "both"
    assert Arbitration.model_validate({"wrong": "the test and the code"}).wrong == "both"
    assert Arbitration.model_validate({"wrong": "the test"}).wrong == "test"
    assert Arbitration.model_validate({"wrong": "implementation"}).wrong == "code"
