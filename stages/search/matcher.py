"""Phrase matching over transcript words: the pure part of search (VideoSearcher's grep).

Text and query go through the same normaliser: Unicode NFKC, case folding, apostrophes
removed ("don't" == "dont"), every other character that is not a letter, digit or combining
mark treated as a word break. A query matches where its words occur as consecutive words of
the transcript, whole words only ("cat" never matches "concatenate"). Numbers match as
written: "5" does not match "five".
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

#: Characters dropped inside words: ASCII and typographic apostrophes, modifier letters, primes.
APOSTROPHES = frozenset("'\u2019\u2018\u02bc\u02bb\u02b9\u2032\u0060\u00b4\uff07")
_WORD_CATEGORIES = ("L", "N", "M")  # letters, numbers, combining marks (accents)


def normalize(text: str) -> list[str]:
    """Words of `text` in comparable form."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    current: list[str] = []
    for ch in folded:
        if ch in APOSTROPHES:
            continue
        if unicodedata.category(ch)[0] in _WORD_CATEGORIES:
            current.append(ch)
        elif current:
            out.append("".join(current))
            current = []
    if current:
        out.append("".join(current))
    # casefold can decompose (e.g. "ß" -> "ss" is fine, but some letters gain marks); NFC keeps
    # both sides in one composed form.
    return [unicodedata.normalize("NFC", w) for w in out]


# -- transcripts (what transcribe writes) ----------------------------------------------------


class _Lenient(BaseModel):
    # transcribe may add fields; search relies only on these.
    model_config = ConfigDict(extra="ignore")


class Word(_Lenient):
    word: str
    start_s: float
    end_s: float
    probability: float = Field(1.0)


class TranscriptSegment(_Lenient):
    start_s: float
    end_s: float
    text: str


class Transcript(_Lenient):
    # Required although it may be empty: an object without it is some other JSON (a mix-up).
    text: str
    words: list[Word] = Field(default_factory=list)
    segments: list[TranscriptSegment] = Field(default_factory=list)


@dataclass(frozen=True)
class Token:
    text: str  # normalised
    word: int  # index into the word list it came from


def word_list(t: Transcript, start_s: float, end_s: float) -> list[Word]:
    """Timed words; without word timestamps, segment (or clip) times stand in for each word."""
    if t.words:
        return list(t.words)
    if t.segments:
        return [
            Word(word=w, start_s=s.start_s, end_s=s.end_s, probability=1.0)
            for s in t.segments
            for w in s.text.split()
        ]
    return [Word(word=w, start_s=start_s, end_s=end_s) for w in t.text.split()]


def tokens(words: Sequence[Word]) -> list[Token]:
    """One token per normalised word; "twenty-five" gives two tokens of the same word."""
    return [Token(text, i) for i, w in enumerate(words) for text in normalize(w.word)]


def find(query: Sequence[str], toks: Sequence[Token]) -> list[tuple[int, int]]:
    """(first, last) token index of every occurrence of `query` (non-overlapping, in order)."""
    n = len(query)
    if n == 0:
        return []
    hits: list[tuple[int, int]] = []
    i = 0
    while i + n <= len(toks):
        if all(toks[i + k].text == query[k] for k in range(n)):
            hits.append((i, i + n - 1))
            i += n
        else:
            i += 1
    return hits


def matched_words(query: Sequence[str], words: Sequence[Word]) -> list[Word]:
    """The words (once each, in order) covered by any occurrence of `query`; [] if none."""
    toks = tokens(words)
    indices: list[int] = []
    for first, last in find(query, toks):
        # Only words that gave a matched token: a punctuation-only word ("—") between two
        # matched words is skipped by the phrase and not reported.
        for w in (toks[k].word for k in range(first, last + 1)):
            if not indices or w > indices[-1]:
                indices.append(w)
    return [words[i] for i in indices]
