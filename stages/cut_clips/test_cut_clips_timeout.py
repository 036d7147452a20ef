"""cut-clips past its exec_timeout: 504 `timeout`, ffmpeg really stopped, the replica recovers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil

from harness.media.generate import demo_video

MODULE = "stages.cut_clips"


MEDIA_TOOLS = ("ffmpeg", "ffprobe")


def _ffmpeg_children(pid: int) -> list[psutil.Process]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.name() in MEDIA_TOOLS:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def _timed_with_children(
    url: str, body: dict[str, Any], pid: int
) -> tuple[httpx.Response, float, set[int]]:
    """Post `body`; also the media tool pids seen under the function process meanwhile."""
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.update(p.pid for p in _ffmpeg_children(pid))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        resp = _post(url, body)
    finally:
        elapsed = time.monotonic() - t0
        stop.set()
        watcher.join()
    return resp, elapsed, seen


def _running(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.name() in MEDIA_TOOLS and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _post(url: str, body: Any) -> httpx.Response:
    return httpx.post(url + "/", json=body, timeout=60)


def _server_pid(url: str) -> int:
    """The function process serving `url` (a child of this test process, found by its port)."""
    port = url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        try:
            if MODULE in " ".join(child.cmdline()) and child.environ().get("PORT") == port:
                return child.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError(f"no {MODULE} process serves {url}")


def _until_served(url: str, body: dict[str, Any], within_s: float) -> httpx.Response:
    # On a busy machine even a tiny cut can overrun a short budget; the point is that the replica
    # serves real work again, so retry a few times (a broken replica never answers 200).
    deadline = time.monotonic() + within_s
    while True:
        resp = _post(url, body)
        if resp.status_code not in (429, 504) or time.monotonic() > deadline:
            return resp
        time.sleep(0.2)


def test_timeout_stops_ffmpeg_and_the_replica_recovers(
    start_function: Callable[..., str], media_dir: Path, upload: Callable[[Path], str],
    request_id: str,
) -> None:  # fmt: skip
    # 3 s: a small cut fits even on a busy CI machine; the slow request below needs minutes.
    url = start_function(MODULE, exec_timeout="3")
    uri = upload(Path(demo_video(media_dir / "demo").path))
    quick = {
        "request_id": f"{request_id}-a",
        "input": {"video": uri},
        "config": {"segments": [{"index": 0, "start_s": 1.0, "end_s": 1.5}]},
    }
    pid = _server_pid(url)
    first = _until_served(url, quick, within_s=20)
    assert first.status_code == 200, first.text
    assert first.json()["metrics"]["pid"] == pid

    # Dozens of full-length clips at the slowest preset: far more than one second of ffmpeg.
    slow = {
        "request_id": request_id,
        "input": {"video": uri},
        "config": {
            "preset": "veryslow",
            "segments": [{"index": i, "start_s": 0.0, "end_s": 21.9} for i in range(100)],
        },
    }
    # ffprobe runs before ffmpeg; under heavy load the deadline may even pass during the probe,
    # so both count, and the slow call is repeated until it was caught running a child.
    for _attempt in range(3):
        resp, elapsed, seen = _timed_with_children(url, slow, pid)
        assert resp.status_code == 504, resp.text
        assert resp.json()["error"]["code"] == "timeout"
        assert elapsed < 9.0  # answered at the deadline, not when the work would have ended
        if seen:
            break
        _until_served(url, {**quick, "config": {"segments": []}}, within_s=5)  # slot is free
    assert seen, "the slow request never started ffmpeg/ffprobe; the test proves nothing"

    time.sleep(1.0)
    left = _ffmpeg_children(pid)
    assert not left, f"ffmpeg/ffprobe still running after the timeout: {[p.pid for p in left]}"
    # Not re-parented elsewhere either: every ffmpeg the request started is gone.
    assert not [p for p in seen if _running(p)]

    # The slot frees once the worker has stopped; then good requests are served again.
    empty = {**quick, "request_id": f"{request_id}-b", "config": {"segments": []}}
    served = _until_served(url, empty, within_s=5)
    assert served.status_code == 200, served.text
    assert served.json()["outputs"] == {"clips": []}
    again = _until_served(url, {**quick, "request_id": f"{request_id}-c"}, within_s=20)
    assert again.status_code == 200, again.text
    (clip,) = again.json()["outputs"]["clips"]
    assert abs(clip["duration_s"] - 0.5) < 0.1
    assert again.json()["metrics"]["pid"] == pid  # the same process, not a restarted one
