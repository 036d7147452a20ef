"""Tolerant matching (matcher.search / matcher.tolerant): kinds, scores, why, and its speed."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stages.search import matcher
from stages.search.matcher import Alternative, Transcript, Word, normalize, search


def transcript(text: str, start: float = 0.0, prob: float = 0.9, **extra: Any) -> Transcript:
    words = [
        Word(word=f" {w}", start_s=start + i * 0.5, end_s=start + i * 0.5 + 0.4, probability=prob)
        for i, w in enumerate(text.split())
    ]
    return Transcript(text=text, words=words, **extra)


def find(query: str, t: Transcript, mode: str = "tolerant") -> matcher.Hit | None:
    return search(normalize(query), t, 0.0, 0.0, mode=mode)  # type: ignore[arg-type]


def test_exact_match_scores_one_in_both_modes() -> None:
    t = transcript("please add two cups of flour to the bowl")
    for mode in ("exact", "tolerant"):
        hit = find("Two cups of FLOUR", t, mode)
        assert hit is not None and (hit.kind, hit.score) == ("exact", 1.0)
        assert [w.word for w in hit.words] == [" two", " cups", " of", " flour"]


@pytest.mark.parametrize(
    ("said", "query", "kind", "heard"),
    [
        # Heard (transcript) vs searched (query), as tiny.en gets them on flite speech.
        ("the harbor at half past", "harbour", "phonetic", "harbor"),
        ("my grandmother and its woolen scarves", "woollen scarves", "phonetic", "woolen"),
        ("the astra not floated inside", "the astronaut floated", "phonetic", "astra not"),
        ("a tiny hummingbird covered beside", "hummingbird hovered", "fuzzy", "covered"),
        ("please add tucups of flour", "two cups of flour", "fuzzy", "tucups"),
        ("please add two cups of flour", "tucups of flour", "fuzzy", "two cups"),
        ("at the lighthouse and follow", "light house", "phonetic", "lighthouse"),
    ],
)
def test_misheard_split_and_merged_words(said: str, query: str, kind: str, heard: str) -> None:
    t = transcript(said, start=40.0)
    assert find(query, t, "exact") is None
    hit = find(query, t)
    assert hit is not None, query
    assert hit.kind == kind and matcher.THRESHOLD <= hit.score < 1.0
    assert heard in [h.lower() for h, _ in hit.why]
    assert all(40.0 <= w.start_s <= w.end_s for w in hit.words)  # the transcript's own times


@pytest.mark.parametrize(
    ("said", "query"),
    [
        ("please add two cups of flour to the bowl", "two cups of sugar"),
        ("the red bus stops at the station every morning", "the green train"),
        ("she opened the window to let in the fresh air", "winter coat"),
        ("the quick brown fox jumps over the lazy dog", "lazy cat"),
        ("we concatenate categories", "cat"),  # short queries stay exact
        ("the cut was clean", "cat"),
    ],
)
def test_unrelated_phrases_do_not_match(said: str, query: str) -> None:
    assert find(query, transcript(said)) is None


def test_unsure_words_score_higher_than_confident_ones() -> None:
    unsure = find("hummingbird hovered", transcript("hummingbird covered", prob=0.2))
    sure = find("hummingbird hovered", transcript("hummingbird covered", prob=1.0))
    assert unsure is not None and sure is not None and unsure.score > sure.score


def test_alternative_hypothesis_matches_as_alternative() -> None:
    alt = Alternative(start_s=3.0, end_s=5.5, text=" found a bronze dagger near the quarry")
    t = transcript("found a bronze banner near the quarry", alternatives=[alt])
    assert find("bronze dagger", t, "exact") is None
    hit = find("bronze dagger", t)
    assert hit is not None and hit.kind == "alternative"
    assert hit.score == matcher.ALTERNATIVE_WEIGHT  # exact in the alternative
    assert [(w.start_s, w.end_s) for w in hit.words] == [(3.0, 5.5), (3.0, 5.5)]


def test_rank_puts_exact_first_then_score() -> None:
    ranked = sorted(
        [("fuzzy", 0.9, 0), ("exact", 1.0, 3), ("phonetic", 0.8, 1), ("exact", 1.0, 2)],
        key=lambda m: matcher.rank_key(*m),
    )
    assert ranked == [("exact", 1.0, 2), ("exact", 1.0, 3), ("fuzzy", 0.9, 0), ("phonetic", 0.8, 1)]


VOCAB = tuple(
    " ".join(
        (
            "the a of to and in that is was he for it with as his on be at by had are but from",
            "or have an they which one you were her all she there would their we him been has",
            "when who will more no if out so said what up its about into than them can only",
            "other new some could time these two may then do first any my now such like our",
            "over man me even most station morning window harbour tractor pharmacist",
            "hummingbird lighthouse astronaut",
        )
    ).split(" ")
)


@pytest.mark.bench
@pytest.mark.parametrize("mode", ["exact", "tolerant"])
@pytest.mark.parametrize("n_words", [40, 2000])
def test_bench_search_modes(benchmark: Any, n_words: int, mode: str) -> None:
    """One clip (~40 words, a few sentences) and a long transcript (~2000 words, ~13 min of
    speech): a 3-word query that is absent (the slow case: every window is scored)."""
    rng = random.Random(n_words)
    t = transcript(" ".join(rng.choice(VOCAB) for _ in range(n_words)))
    query = normalize("purple elephant parade")
    found = benchmark.pedantic(lambda: search(query, t, 0, 0, mode=mode), rounds=5)  # type: ignore[arg-type]
    assert found is None
