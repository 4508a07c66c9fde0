from main import add, page


def test_the_page_has_a_form():
    assert '<form method="post" action="/add">' in page([])


def test_a_note_is_added():
    assert add([], "note=buy+apples") == ["buy apples"]


def test_notes_are_listed():
    assert "<li>first</li>" in page(["first"])
