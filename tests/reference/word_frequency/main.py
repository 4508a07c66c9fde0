"""Reference solution of the word_frequency task (never shown to a model): validates its checks."""

import argparse
import re
from collections import Counter


def top_words(text, n):
    return Counter(re.findall(r"[a-z']+", text.lower())).most_common(n)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with open(args.file) as handle:
        for word, n in top_words(handle.read(), args.top):
            print(f"{word}: {n}")
