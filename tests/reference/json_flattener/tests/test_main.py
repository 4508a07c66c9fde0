from main import flatten


def test_nested():
    assert flatten({"a": {"b": 1}}) == [("a.b", 1)]


def test_list_index():
    assert flatten({"c": ["x"]}) == [("c.0", "x")]


def test_scalar_at_top():
    assert flatten({"d": 3}) == [("d", 3)]
