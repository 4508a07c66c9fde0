"""The program guards the company's test run applies before any test: parsed only, one line per problem."""

from __future__ import annotations

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
