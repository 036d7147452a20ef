"""`./vsearch demo`: make a video with known speech and objects, search it, check the answer."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.commands.search import print_answer, run_search, say
from harness.media.generate import demo_video
from harness.records import check_content

DEMO_QUERY = "flour"


def run_demo(
    state_dir: Path, *, media_dir: Path, as_json: bool, keep: bool, save_dir: Path | None = None
) -> int:
    say("generating the demo video (flite speech, a real photo shown at a known time)", as_json)
    truth = demo_video(media_dir)
    if not as_json:
        print(f"demo video: {truth.path}")
        for sentence in truth.sentences:
            print(f"  said at {sentence.start_s:5.2f}-{sentence.end_s:5.2f} s: {sentence.text}")
        for obj in truth.objects:
            print(f"  shown at {obj.start_s:5.2f}-{obj.end_s:5.2f} s: {', '.join(obj.labels)}")
        print()
    answer = run_search(
        Path(truth.path), DEMO_QUERY, state_dir=state_dir, quiet=as_json, keep=keep,
        save_dir=save_dir,
    )  # fmt: skip
    code = print_answer(answer, as_json=as_json)
    if code != 0:
        return code
    checks = check_content(answer.get("outputs"), truth, query=DEMO_QUERY)
    failed = [c for c in checks if not c.ok]
    out = sys.stderr if as_json else sys.stdout
    print("\ncontent checks against the known truth:", file=out)
    for check in checks:
        print(f"  {check.status:4}  {check.name}  {check.detail}", file=out)
    if answer.get("saved"):
        print(f"\nthe matching clip, to watch: {', '.join(answer['saved'])}", file=out)
    return 1 if failed else 0
