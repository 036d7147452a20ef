"""A small function for testing the runtime itself: each `mode` exercises one contract rule."""

from __future__ import annotations

import gc
import os
import time
from typing import Literal

from base.contracts import Event, Model
from base.errors import BadInput
from base.runtime import Context, Function, serve


class Input(Model):
    source: str | None = None


class Config(Model):
    mode: Literal["echo", "child", "python", "crash", "bad", "copy", "malloc", "gc", "arrival"] = (
        "echo"
    )
    seconds: float = 0.0


class Output(Model):
    mode: str
    fanout: int | None
    uri: str | None = None
    size: int | None = None
    #: mode "malloc": whether glibc served a 40 MiB block with its own mmap.
    mmapped: bool | None = None
    #: mode "gc": objects the collector leaves alone (frozen in the zygote before the fork).
    frozen: int | None = None
    #: mode "arrival": the request's arrival as the handler's context has it.
    arrival: float | None = None


def handle(event: Event[Input, Config], ctx: Context) -> Output:
    mode = event.config.mode
    if mode == "child":
        # A long child process: the deadline must kill it, not wait for it.
        ctx.run(["sleep", str(event.config.seconds)])
    elif mode == "python":
        end = time.monotonic() + event.config.seconds
        while time.monotonic() < end:
            ctx.check_cancelled()
            time.sleep(0.01)
    elif mode == "crash":
        raise RuntimeError("secret internals that must not reach the caller")
    elif mode == "bad":
        raise BadInput("this input is not usable", code="not_media")
    elif mode == "copy":
        assert event.input.source is not None
        path = ctx.download(event.input.source)
        uri = ctx.upload(path, "copy.bin")
        return Output(mode=mode, fanout=event.fanout, uri=uri, size=path.stat().st_size)
    elif mode == "malloc":
        return Output(mode=mode, fanout=event.fanout, mmapped=_big_block_mmapped())
    elif mode == "arrival":
        return Output(mode=mode, fanout=event.fanout, arrival=ctx.request_arrival)
    elif mode == "gc":
        return Output(mode=mode, fanout=event.fanout, frozen=gc.get_freeze_count())
    return Output(mode=mode, fanout=event.fanout)


def _big_block_mmapped() -> bool:
    import ctypes

    from base import malloc

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = malloc.mmapped_blocks()
    block = libc.malloc(40 << 20)
    try:
        after = malloc.mmapped_blocks()
    finally:
        libc.free(block)
    assert before is not None and after is not None, "needs glibc's mallinfo2"
    return after > before


def preload() -> None:
    # The zygote's warm-up; SAMPLE_PRELOAD_THREAD leaves a thread running (a zygote must then
    # refuse to fork).
    if os.environ.get("SAMPLE_PRELOAD_THREAD"):
        import threading

        threading.Thread(target=time.sleep, args=(3600,), name="stray", daemon=True).start()


def init() -> None:
    # Stands in for a model load, so tests can watch a process that is alive but not ready.
    time.sleep(float(os.environ.get("SAMPLE_INIT_SECONDS", "0")))


FUNCTION = Function(
    name="sample",
    input_model=Input,
    config_model=Config,
    output_model=Output,
    handle=handle,
    init=init,
    preload=preload,
    description="runtime test function",
)

if __name__ == "__main__":
    serve(FUNCTION)
