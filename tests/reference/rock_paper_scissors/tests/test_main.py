from main import judge, play


def test_rock_beats_scissors():
    assert judge("rock", "scissors") == "win"


def test_same_moves_tie():
    assert judge("paper", "paper") == "tie"


def test_play_keeps_score():
    assert play(["rock", "paper", "quit"], pick=lambda: "scissors") == {"win": 1, "lose": 1, "tie": 0}
