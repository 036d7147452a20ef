"""The normaliser and phrase matcher of search: pure functions, no server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stages.search.matcher import (
    Transcript,
    Word,
    find,
    matched_words,
    normalize,
    tokens,
    word_list,
)


def words_of(text: str, start: float = 0.0, step: float = 0.5) -> list[Word]:
    return [
        Word(word=f" {w}", start_s=start + i * step, end_s=start + i * step + 0.4, probability=0.9)
        for i, w in enumerate(text.split())
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello, World!", ["hello", "world"]),
        (" don't", ["dont"]),
        ("DON\u2019T", ["dont"]),  # typographic apostrophe
        ("rock \u2019n\u2019 roll", ["rock", "n", "roll"]),
        ("twenty-five", ["twenty", "five"]),
        ("5,000 people", ["5", "000", "people"]),
        ("Straße", ["strasse"]),  # casefold, not lower()
        ("\uff26\uff35\uff2c\uff2c\u3000\uff57\uff49\uff44\uff54\uff48", ["full", "width"]),  # NFKC
        ("ﬁsh", ["fish"]),  # ligature, NFKC
        ("Cafe\u0301 crème", ["café", "crème"]),  # combining accent composed
        ("naïve...", ["naïve"]),
        ("  ", []),
        ("?!…", []),
        (
            "\u039f\u0394\u039f\u03a3 \u03bf\u03b4\u03bf\u03c2",
            ["\u03bf\u03b4\u03bf\u03c3"] * 2,
        ),  # final sigma
    ],
)
def test_normalize(text: str, expected: list[str]) -> None:
    assert normalize(text) == expected


def test_normalize_is_idempotent_and_symmetric() -> None:
    for text in ["Don't STOP", "\uff26\uff4f\uff4f-bar", "Cafe\u0301", "ﬂour"]:
        once = normalize(text)
        assert normalize(" ".join(once)) == once


def test_whole_words_only() -> None:
    words = words_of("we concatenate the categories of cats")
    assert matched_words(["cat"], words) == []
    assert [w.word for w in matched_words(["cats"], words)] == [" cats"]


def test_phrase_is_consecutive_words() -> None:
    words = words_of("the quick brown fox jumps over the lazy dog")
    assert [w.word.strip() for w in matched_words(["brown", "fox"], words)] == ["brown", "fox"]
    assert matched_words(["quick", "fox"], words) == []
    assert matched_words(["fox", "brown"], words) == []


def test_every_occurrence_once_in_order() -> None:
    words = words_of("the cat and the dog and the cat")
    got = matched_words(["the", "cat"], words)
    assert [(w.word.strip(), w.start_s) for w in got] == [
        ("the", 0.0),
        ("cat", 0.5),
        ("the", 3.0),
        ("cat", 3.5),
    ]


def test_overlapping_occurrences_do_not_repeat_words() -> None:
    words = words_of("ha ha ha")
    assert [w.start_s for w in matched_words(["ha", "ha"], words)] == [0.0, 0.5]
    assert find(["ha", "ha"], tokens(words)) == [(0, 1)]


def test_one_word_with_several_tokens() -> None:
    words = words_of("about twenty-five people")
    got = matched_words(normalize("twenty five"), words)
    assert [w.word.strip() for w in got] == ["twenty-five"]
    got = matched_words(normalize("twenty-five people"), words)
    assert [w.word.strip() for w in got] == ["twenty-five", "people"]


def test_punctuation_only_words_are_skipped() -> None:
    words = [*words_of("well"), Word(word=" —", start_s=1, end_s=1.1), *words_of("then", 2)]
    assert [w.word.strip() for w in matched_words(["well", "then"], words)] == ["well", "then"]


def test_empty_query_matches_nothing() -> None:
    assert matched_words([], words_of("anything at all")) == []


def test_word_list_falls_back_to_segment_then_clip_times() -> None:
    seg = Transcript.model_validate(
        {
            "text": "a b. c",
            "words": [],
            "segments": [
                {"start_s": 1.0, "end_s": 2.0, "text": " a b."},
                {"start_s": 3.0, "end_s": 4.0, "text": " c"},
            ],
        }
    )
    assert [(w.word, w.start_s, w.end_s) for w in word_list(seg, 0.5, 4.5)] == [
        ("a", 1.0, 2.0),
        ("b.", 1.0, 2.0),
        ("c", 3.0, 4.0),
    ]
    bare = Transcript.model_validate({"text": "just text"})
    assert [(w.word, w.start_s, w.end_s) for w in word_list(bare, 0.5, 4.5)] == [
        ("just", 0.5, 4.5),
        ("text", 0.5, 4.5),
    ]


def test_transcript_needs_text_and_typed_words() -> None:
    with pytest.raises(ValidationError):
        Transcript.model_validate({"segments": [{"index": 0, "start_s": 0.0, "end_s": 1.0}]})
    with pytest.raises(ValidationError):
        Transcript.model_validate({"text": "x", "words": [{"word": "x", "start_s": None}]})


def test_transcript_model_ignores_extra_fields() -> None:
    t = Transcript.model_validate(
        {"text": "x", "words": [], "segments": [], "language": "en", "model": "tiny.en", "new": 1}
    )
    assert t.text == "x"
