"""Metrics shared by the evaluations: pass@k for code generation, n-gram Shannon entropy for dialogue.

pass@k is the unbiased estimator of Chen et al. (2021, "Evaluating Large Language Models Trained on Code"):
with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), averaged over problems. Computed as a
product so that large n does not overflow; with one greedy sample per problem pass@1 is the pass rate.

Entropy is that of the empirical n-gram distribution, H = -sum p log p, in the stated base (2: bits,
e: nats). Word level: lower-cased runs of letters, digits, underscores and apostrophes (punctuation dropped);
character level: every character, with whitespace runs collapsed to one space. n-grams never cross the
boundary between two texts of a corpus.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

__all__ = [
    "BITS",
    "NATS",
    "char_tokens",
    "mean_pass_at_k",
    "ngram_counts",
    "ngram_entropy",
    "pass_at_k",
    "word_tokens",
]

BITS = 2.0
NATS = math.e

Level = Literal["word", "char"]

_WORD = re.compile(r"[\w']+")
_SPACE = re.compile(r"\s+")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn from n (c of them correct) is correct."""
    if n < 1 or not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs n >= 1, 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # 1 - C(n-c, k)/C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i)
    prob_all_fail = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_fail *= 1.0 - k / i
    return 1.0 - prob_all_fail


def mean_pass_at_k(samples: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k over a benchmark: the mean of per-problem estimates from (n, c) pairs."""
    values = [pass_at_k(n, c, k) for n, c in samples]
    if not values:
        raise ValueError("pass@k of no problems is undefined")
    return sum(values) / len(values)


def word_tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def char_tokens(text: str) -> list[str]:
    return list(_SPACE.sub(" ", text))


def ngram_counts(texts: str | Iterable[str], n: int = 2, level: Level = "word") -> Counter[tuple[str, ...]]:
    """How often each n-gram occurs; a single string is a corpus of one text."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if level not in ("word", "char"):
        raise ValueError(f"level must be 'word' or 'char', got {level!r}")
    tokenize = word_tokens if level == "word" else char_tokens
    counts: Counter[tuple[str, ...]] = Counter()
    for text in [texts] if isinstance(texts, str) else texts:
        tokens: Sequence[str] = tokenize(text)
        counts.update(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return counts


def ngram_entropy(texts: str | Iterable[str], n: int = 2, level: Level = "word", base: float = BITS) -> float:
    """Shannon entropy of the n-gram distribution: bits for base 2, nats for base e.

    0.0 when the texts hold fewer than n tokens (no n-gram, nothing uncertain).
    """
    if base <= 0 or base == 1:
        raise ValueError(f"entropy base must be positive and not 1, got {base}")
    counts = ngram_counts(texts, n, level)
    total = sum(counts.values())
    if total == 0:
        return 0.0
    h = -sum((c / total) * math.log(c / total) for c in counts.values())
    return max(0.0, h / math.log(base))  # max(): -0.0 for a single n-gram
