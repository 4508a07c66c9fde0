"""Reference solution of the number_guess task (never shown to a model): validates its acceptance checks."""

import random
import sys


def answer(secret, guess):
    if guess < secret:
        return "higher"
    if guess > secret:
        return "lower"
    return "correct"


def play(secret, lines):
    guesses = 0
    for line in lines:
        try:
            guess = int(line.strip())
        except ValueError:
            print("please type a number")
            continue
        guesses += 1
        reply = answer(secret, guess)
        if reply == "correct":
            print(f"correct! you took {guesses} guesses")
            return guesses
        print(reply)
    return None


if __name__ == "__main__":
    args = sys.argv[1:]
    secret = int(args[args.index("--secret") + 1]) if "--secret" in args else random.randint(1, 100)
    play(secret, sys.stdin)
