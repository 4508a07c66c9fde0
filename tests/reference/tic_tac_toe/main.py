"""Reference solution of the tic_tac_toe task (never shown to a model): validates its acceptance checks."""

import sys

LINES = [[(r, c) for c in range(3)] for r in range(3)] + [[(r, c) for r in range(3)] for c in range(3)]
LINES += [[(i, i) for i in range(3)], [(i, 2 - i) for i in range(3)]]


def winner(board):
    for line in LINES:
        marks = {board[r][c] for r, c in line}
        if len(marks) == 1 and " " not in marks:
            return marks.pop()
    return None


def move(board, text, player):
    try:
        row, col = (int(x) - 1 for x in text.split())
    except ValueError:
        return "invalid move"
    if not (0 <= row < 3 and 0 <= col < 3):
        return "invalid square"
    if board[row][col] != " ":
        return "that square is taken"
    board[row][col] = player
    return None


def show(board):
    return "\n".join(" | ".join(row) for row in board)


def play(lines):
    board = [[" "] * 3 for _ in range(3)]
    player = "X"
    for line in lines:
        problem = move(board, line, player)
        if problem:
            print(problem)
            continue
        print(show(board))
        if winner(board):
            print(f"{player} wins")
            return player
        if all(cell != " " for row in board for cell in row):
            print("draw")
            return "draw"
        player = "O" if player == "X" else "X"
    return None


if __name__ == "__main__":
    play(sys.stdin)
