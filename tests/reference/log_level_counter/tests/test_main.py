from main import count


def test_counts_levels():
    assert dict(count(["x ERROR a", "y INFO b", "z ERROR c"])) == {"ERROR": 2, "INFO": 1}


def test_most_frequent_first():
    assert count(["INFO", "DEBUG", "DEBUG"])[0] == ("DEBUG", 2)


def test_lines_without_a_level_are_skipped():
    assert count(["hello"]) == []
