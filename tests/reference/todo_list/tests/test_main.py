from main import run


def test_add_then_list():
    items, _ = run(["add", "milk"], [])
    assert run(["list"], items)[1] == "1. [ ] milk"


def test_done_marks_the_item():
    items, _ = run(["done", "1"], [{"text": "milk", "done": False}])
    assert items[0]["done"] is True


def test_remove_deletes_the_item():
    items, _ = run(["remove", "1"], [{"text": "a", "done": False}, {"text": "b", "done": False}])
    assert [i["text"] for i in items] == ["b"]
