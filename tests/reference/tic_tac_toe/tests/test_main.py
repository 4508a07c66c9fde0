from main import move, play, winner


def test_a_row_wins():
    assert winner([["X", "X", "X"], [" "] * 3, [" "] * 3]) == "X"


def test_a_taken_square_is_refused():
    board = [["X", " ", " "], [" "] * 3, [" "] * 3]
    assert "taken" in move(board, "1 1", "O")


def test_a_full_board_is_a_draw():
    assert play(["1 1", "1 2", "1 3", "2 2", "2 1", "2 3", "3 2", "3 1", "3 3"]) == "draw"
