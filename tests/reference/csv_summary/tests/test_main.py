from main import summarize


def test_counts_empty_cells():
    assert summarize([{"a": "1"}, {"a": ""}])[0]["empty"] == 1


def test_numeric_mean():
    assert summarize([{"a": "1"}, {"a": "3"}])[0]["mean"] == 2


def test_text_column_has_no_mean():
    assert "mean" not in summarize([{"a": "x"}])[0]
