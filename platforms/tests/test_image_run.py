"""Run tier: every function image, loaded into Docker, started, invoked once on generated media.

Each container runs as deployed (read-only root, but for segment-speech) with host networking
against the embedded S3 server (SeaweedFS on loopback, credentials generated for this run and
handed over in a 0600 env file, never on a command line). The amd64 functions run as a chain,
each on the previous one's real output, as the orchestrator would call them: extract-audio ->
segment-speech -> cut-clips -> transcode-clip -> transcribe, sample-frames -> detect-objects,
search; every step checks the content of its result. The orchestrator gets health, S3 reads
and its error path (no gateway). Under qemu (binfmt_misc), the arm64 images of extract-audio
and search run and are checked too.

Bazel runs this through run_pytest.py (//platforms/tests:image_run_test), which passes the
tarballs as VSEARCH_TARBALL_<FUNCTION> (this machine's architecture) and
VSEARCH_TARBALL_ARM64_<FUNCTION>. By hand, after `bazel build //stages/search:tarball` etc.,
`.venv/bin/pytest platforms/tests/test_image_run.py` finds the native tarballs in bazel-bin.
Skips with the reason when no Docker engine (or no arm64 emulation) can be had.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf

from harness.embedded.function_process import free_port
from harness.media.generate import VideoTruth, demo_video
from platforms.tests.docker_engine import Engine, Unavailable, ensure_arm64_emulation, obtain_engine

ROOT = Path(__file__).resolve().parents[2]

#: function -> Bazel package, in the order the chain calls them (and the loader loads them).
FUNCTIONS = {
    "extract-audio": "stages/extract_audio",
    "segment-speech": "stages/segment_speech",
    "cut-clips": "stages/cut_clips",
    "transcode-clip": "stages/transcode_clip",
    "transcribe": "stages/transcribe",
    "sample-frames": "stages/sample_frames",
    "detect-objects": "stages/detect_objects",
    "search": "stages/search",
    "orchestrator": "orchestrator",
}
#: As deployed (manifests/README.md): a read-only root with /tmp writable, except segment-speech,
#: whose numba cache loads only from a writable directory.
WRITABLE_ROOT = ("segment-speech",)
#: As OpenFaaS runs functions (setNonRootUser: uid 12000, no group; manifests/README.md), not
#: as the image's own user 10001, which owns the image's files: what a function writes must be
#: writable by any uid.
RUN_AS = "12000"
#: Cheap enough to run under qemu: ffmpeg, and pure Python.
EMULATED = ("extract-audio", "search")
NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())

#: Launch to a 200 on /_/health. Generous: transcribe and detect-objects load models, and under
#: qemu every import is emulated (machines running other tests alongside, too).
STARTUP_S = {"native": 180.0, "emulated": 600.0}
INVOKE_TIMEOUT_S = {"native": 300.0, "emulated": 900.0}


def env_name(function: str, arch: str) -> str:
    middle = "ARM64_" if arch == "arm64" and NATIVE != "arm64" else ""
    return "VSEARCH_TARBALL_" + middle + function.upper().replace("-", "_")


def tarball(function: str, arch: str) -> Path | None:
    given = os.environ.get(env_name(function, arch))
    if given:
        return Path(given)
    if arch == NATIVE:
        built = ROOT / "bazel-bin" / FUNCTIONS[function] / "load" / "tarball.tar"
        if built.exists():
            return built
    return None


def tag(function: str, arch: str) -> str:
    return f"vsearch/{function}:latest" + ("" if arch == NATIVE else f"-{arch}")


# --- the engine, and images loaded in the background ---------------------------------------------


@dataclass
class Figures:
    rows: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    def add(self, function: str, arch: str, **values: float) -> None:
        self.rows.setdefault((function, arch), {}).update(values)

    def table(self) -> list[str]:
        cols = ["load_s", "image_mb", "start_to_health_s", "start_to_ready_s", "invoke_s"]
        lines = ["image run tier figures (s, MB):", f"{'function':16}{'arch':8}" + "".join(
            f"{c:>19}" for c in cols)]  # fmt: skip
        for (function, arch), row in self.rows.items():
            cells = "".join(f"{row[c]:>19.1f}" if c in row else f"{'-':>19}" for c in cols)
            lines.append(f"{function:16}{arch:8}{cells}")
        return lines


class Loader:
    """`docker load`s the tarballs one after another in a thread, while the tests run.

    Loading (decompressing 150-400 MB) overlaps with the previous image's run; layers the
    images share (Debian, the runtime) are stored once.
    """

    def __init__(self, engine: Engine, jobs: list[tuple[str, str, Path]], figures: Figures):
        self.engine = engine
        self.jobs = jobs
        self.figures = figures
        self.done = {(f, a): threading.Event() for f, a, _ in jobs}
        self.errors: dict[tuple[str, str], str] = {}
        self.thread = threading.Thread(target=self._run, name="docker-load", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for function, arch, path in self.jobs:
            key = (function, arch)
            try:
                t0 = time.monotonic()
                self.engine.run("load", "--input", str(path), timeout=900)
                size = json.loads(self.engine.run("image", "inspect", tag(function, arch)).stdout)
                self.figures.add(
                    function, arch, load_s=time.monotonic() - t0, image_mb=size[0]["Size"] / 1e6
                )
                if size[0]["Architecture"] != arch:
                    self.errors[key] = f"{path} is {size[0]['Architecture']}, not {arch}"
            except (subprocess.SubprocessError, OSError, ValueError) as exc:
                detail = getattr(exc, "stderr", "") or ""
                self.errors[key] = f"docker load {path}: {exc} {detail}"
            finally:
                self.done[key].set()

    def wait(self, function: str, arch: str) -> None:
        key = (function, arch)
        if key not in self.done:
            pytest.skip(f"no {arch} tarball of {function}: build //{FUNCTIONS[function]}:tarball")
        self.done[key].wait(timeout=1800)
        if key in self.errors:
            pytest.fail(self.errors[key])


@dataclass
class Images:
    engine: Engine
    loader: Loader
    emulation: str | None  # why arm64 cannot run here, or None when it can


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    figs = Figures()
    yield figs
    if not figs.rows:
        return
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print("\n" + "\n".join(figs.table()), flush=True)
    out = ROOT / ".vsearch" / "image-run"
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"function": f, "arch": a, **row} for (f, a), row in figs.rows.items()]
    (out / "figures.json").write_text(json.dumps(rows, indent=2) + "\n")


def image_of(test: str) -> tuple[str, str]:
    """test_cut_clips -> ("cut-clips", this machine's arch); test_arm64_search -> arm64."""
    name, arch = test.removeprefix("test_"), NATIVE
    if name.startswith("arm64_"):
        name, arch = name.removeprefix("arm64_"), "arm64"
    return name.replace("_", "-"), arch


@pytest.fixture(scope="session")
def images(figures: Figures, request: pytest.FixtureRequest) -> Iterator[Images]:
    # Only the images of the selected tests (test_<function> / test_arm64_<function>) load.
    selected = {image_of(item.name) for item in request.session.items}
    jobs = [
        (f, NATIVE, p) for f in FUNCTIONS if (f, NATIVE) in selected and (p := tarball(f, NATIVE))
    ]
    arm64 = [
        (f, "arm64", p) for f in EMULATED if (f, "arm64") in selected and (p := tarball(f, "arm64"))
    ]
    if not jobs and not arm64:
        pytest.skip("no image tarballs: run through Bazel (//platforms/tests:image_run_test)")
    try:
        engine = obtain_engine()
    except Unavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    emulation: str | None = None
    if arm64 and NATIVE != "arm64":
        try:
            print(ensure_arm64_emulation())
        except Unavailable as exc:
            emulation = str(exc)
    if emulation is None:
        jobs += arm64
    loader = Loader(engine, jobs, figures)
    try:
        yield Images(engine, loader, emulation)
    finally:
        loader.thread.join(timeout=1800)
        engine.stop()


# --- containers -------------------------------------------------------------------------------


@dataclass
class Running:
    url: str
    name: str
    engine: Engine

    def logs(self) -> str:
        done = self.engine.run("logs", "--tail", "60", self.name, check=False)
        return (done.stdout + done.stderr)[-6000:]

    def post(self, body: Any, timeout: float) -> httpx.Response:
        return httpx.post(self.url + "/", json=body, timeout=timeout)


@contextlib.contextmanager
def container(
    images: Images, function: str, arch: str, env: dict[str, str], tmp: Path, figures: Figures
) -> Iterator[Running]:
    if arch != NATIVE and images.emulation:
        pytest.skip(f"arm64 under qemu: {images.emulation}")
    images.loader.wait(function, arch)
    mode = "native" if arch == NATIVE else "emulated"
    port = free_port()
    env_file = tmp / f"{function}-{arch}.env"
    env_file.touch(mode=0o600)
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**env, "PORT": str(port)}.items()))
    name = f"vsearch-run-{function}-{arch}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    read_only = [] if function in WRITABLE_ROOT else ["--read-only"]
    images.engine.run(
        "run", "--detach", "--name", name, "--network", "host", "--user", RUN_AS, *read_only,
        "--tmpfs", "/tmp", "--platform", f"linux/{arch}", "--env-file", str(env_file),
        tag(function, arch),
    )  # fmt: skip
    env_file.unlink()
    box = Running(f"http://127.0.0.1:{port}", name, images.engine)
    try:
        deadline = started + STARTUP_S[mode]
        while True:
            state = json.loads(images.engine.run("inspect", name).stdout)[0]
            if not state["State"]["Running"]:
                pytest.fail(f"{name} exited {state['State']['ExitCode']}:\n{box.logs()}")
            try:
                health = httpx.get(box.url + "/_/health", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    waited = STARTUP_S[mode]
                    pytest.fail(f"{name}: no answer on /_/health in {waited} s\n{box.logs()}")
                time.sleep(0.2)
        figures.add(function, arch, start_to_health_s=time.monotonic() - started)
        assert health.status_code == 200, (health.text, box.logs())
        # Health answers while init (model load) runs beside it; /_/ready once init is done, and
        # a failed init ends the process.
        while True:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(box.url + "/_/ready", timeout=10)
                if ready.status_code != 503:
                    break
            now = json.loads(images.engine.run("inspect", name).stdout)[0]["State"]
            if not now["Running"]:
                pytest.fail(f"{name} exited {now['ExitCode']} during init:\n{box.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{name}: not ready in {STARTUP_S[mode]} s\n{box.logs()}")
            time.sleep(0.2)
        figures.add(function, arch, start_to_ready_s=time.monotonic() - started)
        assert ready.status_code == 200, (ready.text, box.logs())
        assert state["Config"]["Image"] == tag(function, arch)
        # Under qemu too, the container's own Python sees the image's architecture.
        probe = "import os, platform; print(platform.machine(), os.getuid())"
        seen = images.engine.run("exec", name, "python3", "-c", probe).stdout.split()
        assert seen == [{"amd64": "x86_64", "arm64": "aarch64"}[arch], RUN_AS], seen
        yield box
    except BaseException:
        print(f"--- {name} log ---\n{box.logs()}")
        raise
    finally:
        images.engine.run("rm", "--force", name, check=False)


def invoke(
    box: Running, figures: Figures, function: str, arch: str, body: dict[str, Any]
) -> dict[str, Any]:
    mode = "native" if arch == NATIVE else "emulated"
    t0 = time.monotonic()
    try:
        resp = box.post(body, timeout=INVOKE_TIMEOUT_S[mode])
    except httpx.HTTPError as exc:
        pytest.fail(f"POST / to {function} ({arch}): {exc!r}\n{box.logs()}")
    figures.add(function, arch, invoke_s=time.monotonic() - t0)
    assert resp.status_code == 200, f"{resp.status_code} {resp.text[:2000]}\n{box.logs()}"
    out = resp.json()
    assert out["status"] == "ok" and out["function"] == function, out
    return dict(out["outputs"])


# --- S3, media and the chain's state -----------------------------------------------------------


@dataclass
class Chain:
    """What one amd64 step hands to the next (as the orchestrator would)."""

    request_id: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex[:10]}")
    values: dict[str, Any] = field(default_factory=dict)

    def need(self, key: str, step: str) -> Any:
        if key not in self.values:
            pytest.fail(f"{step} needs {key!r} from an earlier step of the chain, which failed")
        return self.values[key]


@pytest.fixture(scope="module")
def chain() -> Chain:
    return Chain()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> VideoTruth:
    """22 s, three sentences at measured times, a person (photo) shown from 5 to 10 s."""
    return demo_video(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="module")
def s3(s3_server: Any) -> Any:
    return s3_server.client()


@pytest.fixture(scope="module")
def demo_uri(s3_server: Any, s3: Any, demo: VideoTruth) -> str:
    key = f"uploads/{uuid.uuid4().hex[:8]}/demo.mp4"
    s3.upload_file(demo.path, s3_server.bucket, key)
    return f"s3://{s3_server.bucket}/{key}"


def fetch(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def put(s3_server: Any, key: str, data: bytes) -> str:
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=key, Body=data)
    return f"s3://{s3_server.bucket}/{key}"


def probe(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams", str(path)],
        capture_output=True, check=True,
    )  # fmt: skip
    return dict(json.loads(done.stdout))


def span_db(x: np.ndarray, sr: int, a: float, b: float) -> float:
    part = x[int(a * sr) : int(b * sr)].astype(np.float64)
    return float(20 * np.log10(np.sqrt(np.mean(np.square(part))) + 1e-12))


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def check_demo_wav(wav: Path, demo: VideoTruth) -> None:
    """16 kHz mono PCM, the video's length, speech where the truth says and only there."""
    meta = sf.info(str(wav))
    assert (meta.samplerate, meta.channels, meta.subtype) == (16000, 1, "PCM_16")
    assert meta.duration == pytest.approx(demo.duration_s, abs=0.1)
    x, sr = sf.read(str(wav), dtype="float32")
    for s in demo.sentences:
        assert span_db(x, sr, s.start_s, s.end_s) > -30, s.text
    for a, b in zip(demo.sentences, demo.sentences[1:], strict=False):
        assert span_db(x, sr, a.end_s + 0.3, b.start_s - 0.3) < -45, (a.text, b.text)


def transcript(text: str, start_s: float, end_s: float) -> dict[str, Any]:
    """A transcript shaped like transcribe's, word times spread over the clip."""
    words = text.split()
    step = (end_s - start_s) / len(words)
    timed = [
        {"word": f" {w}", "start_s": round(start_s + i * step, 3),
         "end_s": round(start_s + (i + 0.8) * step, 3), "probability": 0.9}
        for i, w in enumerate(words)
    ]  # fmt: skip
    return {
        "text": text, "words": timed, "language": "en", "model": "whisper-tiny.en",
        "segments": [{"start_s": start_s, "end_s": end_s, "text": f" {text}"}],
        "duration_s": round(end_s - start_s, 3), "transcript_uri": "",
    }  # fmt: skip


class SecretEnv(dict[str, str]):
    """The containers' S3 settings; its repr hides them, as pytest prints a failing test's args."""

    def __repr__(self) -> str:
        return f"SecretEnv({sorted(self)})"


@pytest.fixture(scope="module")
def env(s3_server: Any) -> dict[str, str]:
    return SecretEnv(s3_server.env())


# --- amd64 (this machine's architecture): the chain ----------------------------------------------


def test_extract_audio(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth, demo_uri: str, s3: Any, s3_server: Any,
) -> None:  # fmt: skip
    with container(images, "extract-audio", NATIVE, env, tmp_path, figures) as box:
        body = {"request_id": chain.request_id, "input": {"video": demo_uri}}
        out = invoke(box, figures, "extract-audio", NATIVE, body)
    key = f"requests/{chain.request_id}/extract-audio/audio.wav"
    assert out["audio"] == f"s3://{s3_server.bucket}/{key}"
    assert out["has_audio"] is True and out["has_video"] is True
    wav = tmp_path / "audio.wav"
    wav.write_bytes(fetch(s3, out["audio"]))
    check_demo_wav(wav, demo)
    chain.values["audio"] = out["audio"]


def test_segment_speech(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth,
) -> None:  # fmt: skip
    audio = chain.need("audio", "segment-speech")
    with container(images, "segment-speech", NATIVE, env, tmp_path, figures) as box:
        body = {"request_id": chain.request_id, "input": {"audio": audio}}
        out = invoke(box, figures, "segment-speech", NATIVE, body)
    found = [(s["start_s"], s["end_s"]) for s in out["segments"]]
    placed = [(s.start_s, s.end_s) for s in demo.sentences]
    assert len(found) == len(placed), (found, placed)
    for (start, end), (t_start, t_end) in zip(found, placed, strict=True):
        assert abs(start - t_start) <= 0.5 and abs(end - t_end) <= 0.5, (found, placed)
        assert start <= t_start + 0.05 and end >= t_end - 0.05, (found, placed)
    chain.values["segments"] = [
        {k: s[k] for k in ("index", "start_s", "end_s")} for s in out["segments"]
    ]


def test_cut_clips(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo_uri: str, s3: Any,
) -> None:  # fmt: skip
    segments = chain.need("segments", "cut-clips")
    with container(images, "cut-clips", NATIVE, env, tmp_path, figures) as box:
        body = {
            "request_id": chain.request_id,
            "input": {"video": demo_uri},
            "config": {"segments": segments},
        }
        out = invoke(box, figures, "cut-clips", NATIVE, body)
    clips = sorted(out["clips"], key=lambda c: c["index"])
    assert [c["index"] for c in clips] == [s["index"] for s in segments]
    for clip, seg in zip(clips, segments, strict=True):
        path = tmp_path / f"clip-{clip['index']}.mp4"
        path.write_bytes(fetch(s3, clip["uri"]))
        info = probe(path)
        assert float(info["format"]["duration"]) == pytest.approx(
            seg["end_s"] - seg["start_s"], abs=0.1
        )
        codecs = sorted(s["codec_name"] for s in info["streams"])
        assert codecs == ["aac", "h264"], codecs
    chain.values["clips"] = clips


def test_transcode_clip(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth, s3: Any,
) -> None:  # fmt: skip
    clip = chain.need("clips", "transcode-clip")[0]
    with container(images, "transcode-clip", NATIVE, env, tmp_path, figures) as box:
        body = {"request_id": chain.request_id, "input": {"clip": clip["uri"]}, "fanout": 0}
        out = invoke(box, figures, "transcode-clip", NATIVE, body)
    wav, mp4 = tmp_path / "c.wav", tmp_path / "c.mp4"
    wav.write_bytes(fetch(s3, out["wav"]))
    mp4.write_bytes(fetch(s3, out["mp4"]))
    meta = sf.info(str(wav))
    assert (meta.samplerate, meta.channels) == (16000, 1)
    assert meta.duration == pytest.approx(clip["duration_s"], abs=0.1)
    x, sr = sf.read(str(wav), dtype="float32")
    sentence = demo.sentences[0]  # clip 0 holds it, shifted by the clip's start
    a, b = sentence.start_s - clip["start_s"], sentence.end_s - clip["start_s"]
    assert span_db(x, sr, a, b) > -30
    video = next(s for s in probe(mp4)["streams"] if s["codec_type"] == "video")
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 320, 240)
    chain.values["wav0"] = out["wav"]


def test_transcribe(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth, s3: Any,
) -> None:  # fmt: skip
    wav = chain.need("wav0", "transcribe")
    clip = chain.need("clips", "transcribe")[0]
    with container(images, "transcribe", NATIVE, env, tmp_path, figures) as box:
        body = {
            "request_id": chain.request_id,
            "input": {"audio": wav},
            "config": {"time_offset_s": clip["start_s"]},
            "fanout": 0,
        }
        out = invoke(box, figures, "transcribe", NATIVE, body)
    said, heard = words_of(demo.sentences[0].text), words_of(out["text"])
    print(f"said {said}, heard {heard}")
    missing = [w for w in said if w not in heard]
    assert len(missing) <= 1 and len(heard) <= len(said) + 1, (said, heard)
    for w in out["words"]:  # video time: the clip's offset applied
        assert clip["start_s"] - 0.05 <= w["start_s"] <= w["end_s"] <= clip["end_s"] + 0.05, w
    assert json.loads(fetch(s3, out["transcript_uri"]))["text"] == out["text"]
    chain.values["transcript0"] = out["transcript_uri"]


def test_sample_frames(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth, s3: Any,
) -> None:  # fmt: skip
    clip = chain.need("clips", "sample-frames")[1]  # sentence 2, inside the person's span
    with container(images, "sample-frames", NATIVE, env, tmp_path, figures) as box:
        body = {
            "request_id": chain.request_id,
            "input": {"video": clip["uri"]},
            "config": {"interval_s": 1.0, "time_offset_s": clip["start_s"]},
            "fanout": 1,
        }
        out = invoke(box, figures, "sample-frames", NATIVE, body)
    frames = out["frames"]
    assert len(frames) == pytest.approx(clip["duration_s"], abs=1.01), frames
    person = demo.objects[0]
    for f in frames:
        assert clip["start_s"] - 0.1 <= f["time_s"] <= clip["end_s"] + 0.1, f
        assert person.start_s <= f["time_s"] <= person.end_s, (f, person)
        assert (f["width"], f["height"]) == (320, 240)
        assert fetch(s3, f["uri"])[:2] == b"\xff\xd8"  # JPEG
    chain.values["frames"] = frames


def test_detect_objects(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth, s3_server: Any,
) -> None:  # fmt: skip
    frames = [
        {"index": f["index"], "time_s": f["time_s"], "uri": f["uri"]}
        for f in chain.need("frames", "detect-objects")
    ]
    # And a frame without the person (2 s: the plain background), which must stay empty of them.
    still = tmp_path / "still.jpg"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-ss", "2", "-i", demo.path,
         "-frames:v", "1", str(still)], check=True,
    )  # fmt: skip
    key = f"requests/{chain.request_id}/run-tier/still.jpg"
    frames.append({"index": 99, "time_s": 2.0, "uri": put(s3_server, key, still.read_bytes())})
    with container(images, "detect-objects", NATIVE, env, tmp_path, figures) as box:
        body = {"request_id": chain.request_id, "input": {"frames": frames}}
        out = invoke(box, figures, "detect-objects", NATIVE, body)
    assert [f["index"] for f in out["frames"]] == [f["index"] for f in frames]
    for f in out["frames"]:
        people = [o["score"] for o in f["objects"] if o["label"] == "person"]
        if f["index"] == 99:
            assert people == [], f
        else:
            assert people and max(people) >= 0.5, f


def test_search(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, chain: Chain,
    demo: VideoTruth, s3: Any, s3_server: Any,
) -> None:  # fmt: skip
    clips = chain.need("clips", "search")
    t0 = chain.need("transcript0", "search")
    # Clip 1's transcript as transcribe would write it: the negative case of the query.
    text1 = demo.sentences[1].text
    t1 = put(
        s3_server,
        f"requests/{chain.request_id}/transcribe/transcript-0001.json",
        json.dumps(transcript(text1, clips[1]["start_s"], clips[1]["end_s"])).encode(),
    )
    entries = [
        {"clip_index": c["index"], "start_s": c["start_s"], "end_s": c["end_s"],
         "transcript": t, "clip": c["uri"]}
        for c, t in zip(clips[:2], (t0, t1), strict=True)
    ]  # fmt: skip
    with container(images, "search", NATIVE, env, tmp_path, figures) as box:
        body = {
            "request_id": chain.request_id,
            "input": {"transcripts": entries},
            "config": {"query": "Fox, JUMPS!"},
        }
        out = invoke(box, figures, "search", NATIVE, body)
    assert [m["clip_index"] for m in out["matches"]] == [clips[0]["index"]], out
    match = out["matches"][0]
    assert [words_of(w["word"]) for w in match["words"]] == [["fox"], ["jumps"]]
    assert match["clip_uri"].endswith(f"/requests/{chain.request_id}/search/match-0000.mp4")
    assert fetch(s3, match["clip_uri"]) == fetch(s3, clips[0]["uri"])


def test_orchestrator(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, demo_uri: str,
    s3_server: Any,
) -> None:  # fmt: skip
    # No gateway listens there: a request must fail clearly and leave its state in S3.
    gateway = f"http://127.0.0.1:{free_port()}"
    with container(
        images, "orchestrator", NATIVE, {**env, "GATEWAY_URL": gateway}, tmp_path, figures
    ) as box:
        unknown = httpx.get(box.url + "/requests/never-sent", timeout=30)
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"]["code"] == "not_found"
        rid = f"run-orch-{uuid.uuid4().hex[:8]}"
        t0 = time.monotonic()
        resp = box.post(
            {"request_id": rid, "input": {"video": demo_uri},
             "config": {"query": "fox", "max_attempts": 1, "deadline_s": 60}},
            timeout=120,
        )  # fmt: skip
        figures.add("orchestrator", NATIVE, invoke_s=time.monotonic() - t0)
        print("orchestrator without a gateway:", resp.status_code, resp.text[:500])
        # 503 connection_error naming the first function: a caller may retry later.
        assert resp.status_code == 503, resp.text
        error = resp.json()["error"]
        assert error["code"] == "connection_error" and "extract-audio" in error["message"], error
        status = httpx.get(box.url + f"/requests/{rid}", timeout=30)
        assert status.status_code == 200, status.text
        stored = status.json()
        assert stored["status"] == "error" and stored["error"]["code"] == error["code"], stored
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=f"requests/{rid}/")
    assert any(o["Key"].endswith("state.json") for o in listed.get("Contents", [])), listed


# --- arm64 under qemu ---------------------------------------------------------------------------


def test_arm64_extract_audio(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, demo: VideoTruth,
    demo_uri: str, s3: Any, s3_server: Any,
) -> None:  # fmt: skip
    rid = f"run-arm-{uuid.uuid4().hex[:8]}"
    with container(images, "extract-audio", "arm64", env, tmp_path, figures) as box:
        body = {"request_id": rid, "input": {"video": demo_uri}}
        out = invoke(box, figures, "extract-audio", "arm64", body)
    assert out["audio"] == f"s3://{s3_server.bucket}/requests/{rid}/extract-audio/audio.wav"
    wav = tmp_path / "audio.wav"
    wav.write_bytes(fetch(s3, out["audio"]))
    check_demo_wav(wav, demo)


def test_arm64_search(
    images: Images, env: dict[str, str], tmp_path: Path, figures: Figures, demo: VideoTruth,
    s3: Any, s3_server: Any,
) -> None:  # fmt: skip
    rid = f"run-arm-{uuid.uuid4().hex[:8]}"
    entries = []
    for i, s in enumerate(demo.sentences):
        t = put(s3_server, f"requests/{rid}/transcribe/transcript-{i:04d}.json",
                json.dumps(transcript(s.text, s.start_s, s.end_s)).encode())  # fmt: skip
        clip = put(s3_server, f"requests/{rid}/transcode-clip/clip-{i:04d}.mp4", os.urandom(4096))
        entries.append(
            {"clip_index": i, "start_s": s.start_s, "end_s": s.end_s, "transcript": t, "clip": clip}
        )
    with container(images, "search", "arm64", env, tmp_path, figures) as box:
        body = {"request_id": rid, "input": {"transcripts": entries}, "config": {"query": "flour"}}
        out = invoke(box, figures, "search", "arm64", body)
    assert [m["clip_index"] for m in out["matches"]] == [1], out
    assert [words_of(w["word"]) for w in out["matches"][0]["words"]] == [["flour"]]
    assert fetch(s3, out["matches"][0]["clip_uri"]) == fetch(s3, entries[1]["clip"])
