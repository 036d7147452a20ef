"""Limits that must hold: a hung function is stopped at its deadline, an OOM kill is reported.

Both need declarations the shared platform must not have (a 0.5 s exec_timeout, a memory limit
below need), so they share a platform of their own with only the functions their requests
reach. The two requests take disjoint paths through it:
- a video without audio: extract-audio -> sample-frames (exec_timeout 1 s); the request asks
  for every frame at 8K (legal config), so its ffmpeg would run for tens of seconds: a "hang";
- audio only: extract-audio -> segment-speech -> transcribe (and cut-clips -> transcode-clip)
  (memory limit 150 MiB, below what loading its model needs).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from harness.reliability.media import QUERY, Media
from harness.reliability.support import (
    ProcessWatch,
    Rig,
    declarations,
    figure,
    new_id,
    processes_matching,
    start_platform,
    wait_until,
)

HUNG = "sample-frames"
HUNG_TIMEOUT = "1s"
#: Every frame, scaled to 7680 px wide: minutes of JPEG encoding for an 8 s video.
HANG_CONFIG = {"frame_interval_s": 0.05, "functions": {HUNG: {"width": 7680, "jpeg_quality": 2}}}
STARVED = "transcribe"
STARVED_LIMIT = "150Mi"
LIMITED_FUNCTIONS = (
    "orchestrator",
    "extract-audio",
    "segment-speech",
    "cut-clips",
    "transcode-clip",
    "transcribe",
    "sample-frames",
)


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    state_dir = tmp_path_factory.mktemp("reliability-limited")
    decls = declarations(
        # The hang renders 8K frames: room enough that the deadline, not the kernel, stops it.
        {
            HUNG: {"exec_timeout": HUNG_TIMEOUT, "memory_limit": "3Gi"},
            STARVED: {"memory_limit": STARVED_LIMIT},
        },
        only=LIMITED_FUNCTIONS,
    )
    # Not waiting for every function: the starved one may never become ready, by design.
    platform = start_platform(state_dir, decls, wait_ready=False)
    rig = Rig(platform)
    try:
        others = [n for n in LIMITED_FUNCTIONS if n != STARVED]
        ready = wait_until(
            lambda: all(rig.functions()[n]["availableReplicas"] >= 1 for n in others), 300, 0.2
        )
        assert ready, {n: f["availableReplicas"] for n, f in rig.functions().items()}
        yield rig
    finally:
        rig.close()
        platform.stop()


def test_a_hung_function_is_stopped_at_its_deadline(limited: Rig, rel_media: Media) -> None:
    rig = limited
    # A unique file name: the stage's ffmpeg has it on its command line, so the process table
    # shows exactly this request's children (other test runs may use sample-frames too).
    name = f"hang-{uuid.uuid4().hex[:8]}.mp4"
    uri = rig.upload(rel_media.no_audio.path, name)
    request_id = new_id("hang")
    pids = [r["pid"] for r in rig.platform.function(HUNG)["vsearch"]["replicas"]]
    with figure("fault_hang") as fig:
        # Only sample-frames' children: it alone reads the source through a presigned URL
        # (range requests), so its ffmpeg has an argument holding both "http" and <name>; the
        # other stages' ffmpeg read local copies.
        mine = ("http", name)
        with ProcessWatch(*mine) as watch:
            answer = rig.search(uri, QUERY, request_id=request_id, config=HANG_CONFIG)
        gone = wait_until(lambda: not processes_matching(*mine), 5)
        leftover = processes_matching(*mine)

        def replica_children() -> list[str]:
            names = []
            for pid in pids:
                try:
                    names += [c.name() for c in psutil.Process(pid).children(recursive=True)]
                except psutil.Error:
                    continue
            return names

        # A SIGKILLed ffmpeg holding GBs of frames takes a moment to finish exiting (its
        # command line is already gone while it does): wait for it, boundedly.
        wait_until(lambda: "ffmpeg" not in replica_children(), 10)
        children = replica_children()
        idle = wait_until(lambda: rig.platform.function(HUNG)["vsearch"]["inflight"] == 0, 5)
        state = rig.state(request_id) or {}
        fig.add(rig.verdict(answer, lambda a: False)).label = f"{HUNG} exec_timeout {HUNG_TIMEOUT}"
        fig.measured.update(
            answer=f"{answer.status} {answer.code}: {answer.message}",
            answered_after_s=round(answer.seconds, 2),
            ffmpeg_seen=sorted(watch.seen.values()),
            left_after_answer=leftover,
            replica_children_after=children,
            replica_slot_released=idle,
        )

    assert answer.status == 504 and answer.code == "timeout", (answer.status, answer.body)
    assert answer.function == HUNG, answer.message
    assert "ffmpeg" in watch.seen.values(), "ffmpeg never ran: the deadline did not stop work"
    assert gone, f"orphaned processes after the timeout: {leftover}"
    assert "ffmpeg" not in children, children
    assert idle, "the timed-out call still holds its replica slot"
    assert state.get("status") == "error" and state["error"]["function"] == HUNG, state
    assert all(map(psutil.pid_exists, pids)), "the replica died instead of stopping the work"


def test_an_oom_kill_is_reported_with_function_and_replica(limited: Rig, rel_media: Media) -> None:
    rig = limited
    if not rig.platform.limits_enforced:
        pytest.skip(f"cgroup memory limits are not enforced here: {rig.platform.limits_reason}")
    uri = rig.upload(rel_media.audio_only.path)
    request_id = new_id("oom")
    with figure("fault_oom") as fig:
        answer = rig.search(uri, QUERY, request_id=request_id, timeout_s=300)
        ooms = rig.platform.events(type="oom_kill", function=STARVED)
        deaths = rig.platform.events(type="replica_died", function=STARVED)
        state = rig.state(request_id) or {}
        fig.add(rig.verdict(answer, lambda a: False)).label = f"{STARVED} limit {STARVED_LIMIT}"
        named = re.search(rf"replica ({STARVED}-\d+)", answer.message)
        fig.measured.update(
            answer=f"{answer.status} {answer.code}: {answer.message}",
            answered_after_s=round(answer.seconds, 2),
            oom_events=[f"{e.replica}: {e.message}" for e in ooms],
            replica_deaths=[f"{e.replica}: {e.message}" for e in deaths],
            state_error=state.get("error"),
        )

    assert answer.status in (502, 503) and answer.function == STARVED, answer.body
    assert "OOM" in answer.message and named, answer.message
    # The replica the orchestrator names is one the gateway saw OOM-killed.
    assert named.group(1) in {e.replica for e in ooms}, (named.group(1), ooms)
    assert answer.seconds < 240, "an OOM-killed function made the request hang"
    assert state.get("status") == "error" and state["error"]["function"] == STARVED, state


@pytest.mark.slow
def test_an_oom_kill_mid_invocation_is_reported(
    tmp_path_factory: pytest.TempPathFactory, rel_media: Media, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cut-clips' Python fits in 72 MiB, its x264 child does not: killed mid-call (the clip's
    one encode; transcode-clip keeps the stream and no longer runs x264). Fresh processes, no
    zygote: a forked replica's cgroup is not charged for the pages it shares with its zygote,
    which leaves x264 room enough here (measured peak 62 MiB of 72), and a zygote needs more
    than the lower limit that would bite (at 48 MiB the zygote itself was OOM-killed)."""
    monkeypatch.setenv("VSEARCH_ZYGOTE", "0")
    state_dir = tmp_path_factory.mktemp("reliability-oom-mid")
    platform = start_platform(
        state_dir,
        declarations({"cut-clips": {"memory_limit": "72Mi"}}),
        wait_ready=True,
    )
    rig = Rig(platform)
    try:
        if not platform.limits_enforced:
            pytest.skip(f"cgroup memory limits are not enforced here: {platform.limits_reason}")
        uri = rig.upload(rel_media.short.path)
        with figure("fault_oom_mid_invocation") as fig:
            t0 = time.monotonic()
            answer = rig.search(uri, QUERY, timeout_s=300)
            fig.add(rig.verdict(answer, lambda a: False)).label = "cut-clips limit 72Mi"
            fig.measured.update(
                answer=f"{answer.status} {answer.code}: {answer.message}",
                answered_after_s=round(time.monotonic() - t0, 2),
                oom_events=[
                    f"{e.replica}: {e.message}"
                    for e in platform.events(type="oom_kill", function="cut-clips")
                ],
            )
        ooms = platform.events(type="oom_kill", function="cut-clips")
        assert ooms, "no OOM kill: the limit did not bite"
        assert answer.status == 502 and answer.function == "cut-clips", answer.body
        if answer.code == "internal" and "exit -9" in answer.message:
            # The kernel killed only the ffmpeg child; the replica survived and answered 500.
            pytest.xfail(f"bug: a child's OOM kill reaches the caller as {answer.message!r}")
        assert answer.code == "oom_killed" and "OOM" in answer.message, answer.message
        assert re.search(r"replica cut-clips-\d+", answer.message), answer.message
    finally:
        rig.close()
        platform.stop()
