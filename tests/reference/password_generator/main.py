"""Reference solution of the password_generator task (never shown to a model): validates its checks."""

import argparse
import secrets
import string


def generate(length, digits, symbols):
    alphabet = string.ascii_letters + (string.digits if digits else "") + ("!#$%&*+-=?@^_" if symbols else "")
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(length))
        if (not digits or any(c.isdigit() for c in password) or length < 2) and (
            not symbols or any(not c.isalnum() for c in password) or length < 2
        ):
            return password


def strength(password):
    if len(password) < 8:
        return "weak"
    varied = any(c.isdigit() for c in password) and any(not c.isalnum() for c in password)
    return "strong" if len(password) >= 12 and varied else "fair"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=12)
    parser.add_argument("--digits", action="store_true")
    parser.add_argument("--symbols", action="store_true")
    args = parser.parse_args()
    password = generate(args.length, args.digits, args.symbols)
    print(password)
    print(f"strength: {strength(password)}")
