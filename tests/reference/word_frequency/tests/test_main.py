from main import top_words


def test_ignores_case():
    assert top_words("A a", 1) == [("a", 2)]


def test_ignores_punctuation():
    assert top_words("hi! hi,", 1) == [("hi", 2)]


def test_top_n():
    assert len(top_words("a b c", 2)) == 2
