"""pass@k and n-gram entropy against values worked out by hand."""

from __future__ import annotations

import math
from itertools import combinations

import pytest

from sopgraph.evals.metrics import (
    BITS,
    NATS,
    char_tokens,
    mean_pass_at_k,
    ngram_counts,
    ngram_entropy,
    pass_at_k,
    word_tokens,
)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (10, 3, 1, 0.3),  # pass@1 is c/n
        (5, 2, 2, 1 - 3 / 10),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (10, 0, 5, 0.0),
        (10, 6, 5, 1.0),  # n - c < k: every draw of 5 holds a correct sample
        (20, 5, 10, 1 - math.comb(15, 10) / math.comb(20, 10)),
    ],
)
def test_pass_at_k_matches_hand_computed_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_equals_the_fraction_of_k_subsets_with_a_correct_sample() -> None:
    samples = [True, False, False, True, False, False]  # n=6, c=2
    for k in range(1, 7):
        subsets = list(combinations(samples, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(6, 2, k) == pytest.approx(brute)


def test_pass_at_k_is_stable_for_large_n() -> None:
    value = pass_at_k(2000, 1, 1000)
    assert value == pytest.approx(0.5)


def test_mean_pass_at_1_is_the_pass_rate() -> None:
    assert mean_pass_at_k([(1, 1), (1, 0), (1, 1), (1, 0)], 1) == 0.5
    assert mean_pass_at_k([(5, 2), (4, 1)], 2) == pytest.approx((0.7 + 0.5) / 2)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_impossible_arguments(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        mean_pass_at_k([], 1)


def test_uniform_over_four_bigrams_is_two_bits_or_ln4_nats() -> None:
    text = "a b c d a"  # bigrams ab, bc, cd, da: four, once each
    assert ngram_entropy(text, n=2, base=BITS) == pytest.approx(2.0)
    assert ngram_entropy(text, n=2, base=NATS) == pytest.approx(math.log(4))


def test_constant_text_has_zero_entropy() -> None:
    assert ngram_entropy("yes yes yes yes yes") == 0.0
    assert ngram_entropy("aaaaaa", level="char") == 0.0
    assert ngram_entropy("aaaaaa", n=3, level="char", base=NATS) == 0.0


def test_skewed_distribution() -> None:
    # unigrams x x x y: p = 3/4, 1/4 -> H = -(3/4 log2 3/4 + 1/4 log2 1/4) = 0.8113 bits
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert ngram_entropy("x x x y", n=1) == pytest.approx(expected)


def test_character_level_counts_every_character_with_whitespace_collapsed() -> None:
    assert char_tokens("ab  c\n") == ["a", "b", " ", "c", " "]
    # "abab": bigrams ab, ba, ab -> p = 2/3, 1/3
    expected = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
    assert ngram_entropy("abab", n=2, level="char") == pytest.approx(expected)


def test_word_level_is_case_insensitive_and_drops_punctuation() -> None:
    assert word_tokens("Hello, World! It's me.") == ["hello", "world", "it's", "me"]
    assert ngram_entropy("Hi. hi! HI?", n=1) == 0.0


def test_ngrams_do_not_cross_text_boundaries() -> None:
    counts = ngram_counts(["a b", "c d"], n=2)
    assert counts == {("a", "b"): 1, ("c", "d"): 1}
    assert ngram_entropy(["a b", "c d"]) == pytest.approx(1.0)


def test_too_short_text_has_no_ngrams_and_zero_entropy() -> None:
    assert ngram_entropy("one", n=2) == 0.0
    assert ngram_entropy("", n=1, level="char") == 0.0


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"base": 1.0}, {"base": -2.0}, {"level": "sentence"}])
def test_entropy_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ngram_entropy("a b c", **kwargs)  # type: ignore[arg-type]
