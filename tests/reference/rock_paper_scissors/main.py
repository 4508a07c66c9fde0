"""Reference solution of the rock_paper_scissors task (never shown to a model): validates its checks."""

import random
import sys

BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}


def judge(player, computer):
    if player == computer:
        return "tie"
    return "win" if BEATS[player] == computer else "lose"


def play(lines, pick=lambda: random.choice(list(BEATS))):
    score = {"win": 0, "lose": 0, "tie": 0}
    for line in lines:
        move = line.strip().lower()
        if move == "quit":
            break
        if move not in BEATS:
            print("invalid move: type rock, paper, scissors or quit")
            continue
        computer = pick()
        result = judge(move, computer)
        score[result] += 1
        print(f"computer: {computer}; you {result}")
        print(f"score: player {score['win']}, computer {score['lose']}")
    return score


if __name__ == "__main__":
    play(sys.stdin)
