"""Evaluation set for search: sentences spoken by the repo's TTS, and labelled queries.

Each sentence becomes one clip; it goes through the real transcriber (tiny.en), and then every
query is run in both modes against every clip. A (query, clip) pair is relevant when the query's
words were *spoken* in that clip (the labels below), whatever the transcript says.
`figures()` gives precision and recall per mode; `python -m stages.search.evaluation FILE`
prints them for transcripts saved by the evaluation test (`VSEARCH_EVAL_OUT=FILE`), and the
precision/recall of the tolerant mode at several thresholds (how THRESHOLD was calibrated).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stages.search import matcher

SENTENCES: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "please add two cups of flour to the bowl",
    "the red bus stops at the station every morning",
    "she opened the window to let in the fresh air",
    "the archaeologist found a bronze dagger near the quarry",
    "my grandmother knits woollen scarves every winter",
    "the ferry leaves the harbour at half past seven",
    "he parked the tractor beside the old barn",
    "the pharmacist handed me a bottle of cough syrup",
    "a flock of geese flew over the frozen lake",
    "the violinist tuned her instrument before the concert",
    "we ate blueberry pancakes with maple syrup",
    "the plumber fixed the leaking faucet in the kitchen",
    "thunderstorms are expected along the coast tonight",
    "the librarian stamped the books with a purple seal",
    "turn left at the lighthouse and follow the gravel road",
    "the mechanic replaced the worn brake pads",
    "our neighbour grows tomatoes and zucchini in the garden",
    "the astronaut floated weightlessly inside the capsule",
    "a tiny hummingbird hovered beside the feeder",
)

Category = Literal["spoken", "misheard", "split_merged", "absent"]


@dataclass(frozen=True)
class Query:
    text: str
    category: Category
    relevant: frozenset[int]  # indices of the sentences in which it was spoken


def _q(text: str, category: Category, *relevant: int) -> Query:
    return Query(text, category, frozenset(relevant))


#: "spoken": said and usually transcribed right; "misheard": said, with a word tiny.en tends to
#: get wrong on these voices (spelling variants, rare words); "split_merged": a word said as one
#: and searched as two, or heard as two; "absent": never said (near misses included).
QUERIES: tuple[Query, ...] = (
    _q("lazy dog", "spoken", 0),
    _q("two cups of flour", "spoken", 1),
    _q("station", "spoken", 2),
    _q("fresh air", "spoken", 3),
    _q("archaeologist", "spoken", 4),
    _q("every winter", "spoken", 5),
    _q("old barn", "spoken", 7),
    _q("syrup", "spoken", 8, 11),
    _q("frozen lake", "spoken", 9),
    _q("maple syrup", "spoken", 11),
    _q("leaking faucet", "spoken", 12),
    _q("along the coast", "spoken", 13),
    _q("purple seal", "spoken", 14),
    _q("gravel road", "spoken", 15),
    _q("zucchini", "spoken", 17),
    _q("inside the capsule", "spoken", 18),
    _q("the concert", "spoken", 10),
    _q("quick brown fox", "misheard", 0),
    _q("jumps over the lazy dog", "misheard", 0),
    _q("bronze dagger", "misheard", 4),
    _q("knits woollen scarves", "misheard", 5),
    _q("woollen", "misheard", 5),
    _q("harbour", "misheard", 6),
    _q("half past seven", "misheard", 6),
    _q("her instrument", "misheard", 10),
    _q("stamped the books", "misheard", 14),
    _q("worn brake pads", "misheard", 16),
    _q("neighbour grows tomatoes", "misheard", 17),
    _q("the astronaut floated", "misheard", 18),
    _q("hummingbird hovered", "misheard", 19),
    _q("hovered beside the feeder", "misheard", 19),
    _q("astronaut", "split_merged", 18),
    _q("knits", "split_merged", 5),
    _q("grand mother", "split_merged", 5),
    _q("light house", "split_merged", 15),
    _q("thunder storms", "split_merged", 13),
    _q("blue berry pancakes", "split_merged", 11),
    _q("green train", "absent"),
    _q("two cups of sugar", "absent"),
    _q("silver spoon", "absent"),
    _q("lazy cat", "absent"),
    _q("red car", "absent"),
    _q("frozen river", "absent"),
    _q("cough medicine", "absent"),
    _q("old house", "absent"),
    _q("maple leaves", "absent"),
    _q("purple dagger", "absent"),
    _q("station wagon", "absent"),
    _q("morning coffee", "absent"),
    _q("kitchen table", "absent"),
    _q("garden hose", "absent"),
    _q("winter coat", "absent"),
    _q("half an hour", "absent"),
    _q("blue sky", "absent"),
    _q("electric guitar", "absent"),
)


@dataclass(frozen=True)
class Figures:
    mode: str
    threshold: float
    true_pos: int
    false_pos: int
    relevant: int

    @property
    def precision(self) -> float:
        found = self.true_pos + self.false_pos
        return self.true_pos / found if found else 1.0

    @property
    def recall(self) -> float:
        return self.true_pos / self.relevant if self.relevant else 1.0


#: The sentences the CI test transcribes (seconds, not minutes): a split word, a merged one,
#: spelling variants and mis-heard rare words. The full set: `VSEARCH_SEARCH_EVAL=full`.
CI_SENTENCES: tuple[int, ...] = (5, 13, 18, 19)

Transcripts = Mapping[int, matcher.Transcript]  # sentence index -> its transcript


def run(
    transcripts: Transcripts,
    mode: Literal["exact", "tolerant"],
    threshold: float = matcher.THRESHOLD,
    queries: Sequence[Query] = QUERIES,
) -> dict[str, list[tuple[int, matcher.Hit]]]:
    """query text -> [(clip index, hit)] for every clip it matched."""
    out: dict[str, list[tuple[int, matcher.Hit]]] = {}
    for q in queries:
        words = matcher.normalize(q.text)
        hits = []
        for i, t in transcripts.items():
            hit = matcher.search(words, t, 0.0, 0.0, mode=mode, threshold=threshold)
            if hit is not None:
                hits.append((i, hit))
        out[q.text] = hits
    return out


def figures(
    transcripts: Transcripts,
    mode: Literal["exact", "tolerant"],
    threshold: float = matcher.THRESHOLD,
    queries: Sequence[Query] = QUERIES,
) -> Figures:
    results = run(transcripts, mode, threshold, queries)
    tp = fp = relevant = 0
    for q in queries:
        found = {i for i, _ in results[q.text]}
        spoken = q.relevant & transcripts.keys()
        tp += len(found & spoken)
        fp += len(found - spoken)
        relevant += len(spoken)
    return Figures(mode, threshold, tp, fp, relevant)


def table(transcripts: Transcripts) -> str:
    """Precision and recall per mode, overall and per query category (markdown)."""
    rows = [
        "| mode | queries | precision | recall | TP | FP | relevant |",
        "|---|---|---|---|---|---|---|",
    ]
    for category in (None, "spoken", "misheard", "split_merged", "absent"):
        qs = [q for q in QUERIES if category is None or q.category == category]
        for mode in ("exact", "tolerant"):
            f = figures(transcripts, mode, queries=qs)  # type: ignore[arg-type]
            recall = f"{f.recall:.3f}" if f.relevant else "-"
            rows.append(
                f"| {mode} | {category or 'all'} ({len(qs)}) | {f.precision:.3f} | "
                f"{recall} | {f.true_pos} | {f.false_pos} | {f.relevant} |"
            )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m stages.search.evaluation TRANSCRIPTS.json", file=sys.stderr)
        return 2
    raw = json.loads(Path(args[0]).read_text())
    transcripts = {int(i): matcher.Transcript.model_validate(t) for i, t in raw.items()}
    print(table(transcripts))
    print("\n| threshold | precision | recall |\n|---|---|---|")
    for th in (0.5, 0.55, 0.6, 0.66, 0.7, 0.75, 0.8, 0.9):
        f = figures(transcripts, "tolerant", th)
        print(f"| {th:.2f} | {f.precision:.3f} | {f.recall:.3f} |")
    print()
    for q in QUERIES:
        hits = run(transcripts, "tolerant", queries=[q])[q.text]
        shown = ", ".join(f"{i}:{h.kind}:{h.score:.2f}" for i, h in hits) or "-"
        print(f"{q.category:12} {q.text!r:30} relevant={sorted(q.relevant)} -> {shown}")
    return 0
