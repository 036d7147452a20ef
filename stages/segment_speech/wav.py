"""Reading the WAV that extract-audio wrote: validation and block-wise mono decoding.

soundfile reads PCM directly (no resampling, unlike librosa.load); blocks keep memory bounded
for long recordings (a 3 h 16 kHz file would be 690 MB as one float32 array).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from base.errors import BadInput

WAV_FORMATS = {"WAV", "WAVEX", "RF64"}
_UNKNOWN_SIZES = {0, 0xFFFFFFFF}  # streamed writers leave the data size unset
_MAX_CHUNKS = 64


@dataclass(frozen=True)
class WavInfo:
    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def check_riff(path: Path) -> None:
    """Refuse a RIFF WAV whose data chunk is shorter than its header says (a cut-off upload).

    libsndfile silently reads what is there, which would shift nothing but lose the end of the
    audio; the caller should know its input is damaged.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # not plain RIFF (RF64, other formats): soundfile decides
        offset = 12
        for _ in range(_MAX_CHUNKS):
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"data":
                available = size - offset - 8
                if csize not in _UNKNOWN_SIZES and available < csize - 1:
                    raise BadInput(
                        f"the WAV is truncated: {available} of {csize} data bytes present",
                        code="truncated_audio",
                    )
                return
            offset += 8 + csize + (csize & 1)


def open_wav(path: Path) -> WavInfo:
    check_riff(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise BadInput(f"not a readable WAV file: {exc}", code="not_wav") from None
    if info.format not in WAV_FORMATS:
        raise BadInput(
            f"expected a WAV file (from extract-audio), got {info.format_info or info.format}",
            code="not_wav",
        )
    if info.frames <= 0 or info.samplerate <= 0 or info.channels <= 0:
        raise BadInput("the WAV holds no audio samples", code="empty_audio")
    return WavInfo(path, int(info.samplerate), int(info.channels), int(info.frames))


def blocks(wav: WavInfo, block_frames: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first sample, mono float32 samples) per block; channels are averaged."""
    try:
        with sf.SoundFile(str(wav.path)) as f:
            start = 0
            while start < wav.frames:
                data = f.read(
                    min(block_frames, wav.frames - start), dtype="float32", always_2d=True
                )
                if data.shape[0] == 0:
                    break
                yield start, data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                start += data.shape[0]
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise BadInput(f"the WAV cannot be decoded: {exc}", code="corrupt_audio") from None
