from main import answer, play


def test_too_low_says_higher():
    assert answer(42, 10) == "higher"


def test_too_high_says_lower():
    assert answer(42, 50) == "lower"


def test_play_counts_guesses():
    assert play(7, ["1", "x", "7"]) == 2
