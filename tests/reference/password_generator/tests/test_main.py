from main import generate, strength


def test_length():
    assert len(generate(16, False, False)) == 16


def test_short_is_weak():
    assert strength("abc") == "weak"


def test_long_varied_is_strong():
    assert strength("abcdefgh1234!") == "strong"
