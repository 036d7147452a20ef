"""`./vsearch search VIDEO --query WORDS` and `./vsearch demo`: one request through the pipeline.

The video is uploaded to the platform's bucket, the orchestrator is invoked through the gateway,
and progress is read from the request's state while the call runs.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from harness.commands import output, platform
from harness.commands.platform import Connection

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv"}
AUDIO_SUFFIXES = {".wav", ".m4a", ".mp3", ".flac", ".ogg", ".opus", ".aac"}


class UsageError(Exception):
    """A problem the user can fix (missing file, platform not starting): exit 2, no trace."""


def safe_object_name(name: str) -> str:
    """base.storage's key segment for a file name (harness/runner.py names its uploads so)."""
    from base.storage import safe_segment  # boto3 is slow to import: on first use

    return safe_segment(name)


def check_video(path: Path) -> None:
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    if not path.is_file():
        raise UsageError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise UsageError(f"the file is empty: {path}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


class Progress:
    """Polls GET /requests/{id} and prints what changed, on one line in a terminal."""

    def __init__(self, conn: AnyConnection, request_id: str, *, quiet: bool) -> None:
        self.conn = conn
        self.request_id = request_id
        self.quiet = quiet
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._last = ""
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Progress:
        if not self.quiet:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        if self._last and sys.stderr.isatty():
            sys.stderr.write("\n")

    def _run(self) -> None:
        url = f"{self.conn.gateway_url}/function/orchestrator/requests/{self.request_id}"
        with httpx.Client(timeout=5) as client:
            while not self._stop.wait(1.0):
                try:
                    response = client.get(url)
                except httpx.HTTPError:
                    continue
                if response.status_code != 200:
                    self._show("waiting for the orchestrator")
                    continue
                progress = response.json().get("progress") or {}
                stage = progress.get("stage", "starting")
                clips = progress.get("clips_total")
                done = progress.get("clips_done", 0)
                text = f"{stage}" + (f" — clips {done}/{clips}" if clips else "")
                self._show(text)

    def _show(self, text: str) -> None:
        line = f"[{time.monotonic() - self.started:5.1f}s] {text}"
        if text == self._last:
            if sys.stderr.isatty():
                sys.stderr.write("\r" + line)
                sys.stderr.flush()
            return
        self._last = text
        sys.stderr.write(("\r" + line.ljust(60)) if sys.stderr.isatty() else line + "\n")
        sys.stderr.flush()


def upload(conn: AnyConnection, video: Path) -> str:
    from base.storage import upload_key

    key = upload_key(uuid.uuid4().hex[:12], video.name)
    conn.s3_client().upload_file(str(video), conn.bucket, key)
    return f"s3://{conn.bucket}/{key}"


#: How long the presigned links printed for the clips stay valid.
LINK_EXPIRES_S = 3600


def clip_file_name(index: int, start_s: float, end_s: float, *, match: bool) -> str:
    """`match-clip1_6.44-8.98s.mp4`: the clip's index and its times in the video."""
    return f"{'match-' if match else ''}clip{index}_{start_s:.2f}-{end_s:.2f}s.mp4"


def clip_files(result: dict[str, Any], *, every_clip: bool) -> dict[str, str]:
    """File name -> s3 URI of the matched clips (and with every_clip, of every clip)."""
    wanted = {
        clip_file_name(m["clip_index"], m["start_s"], m["end_s"], match=True): m["clip_uri"]
        for m in result.get("matches", [])
    }
    if every_clip:
        for clip in result.get("clips", []):
            name = clip_file_name(clip["index"], clip["start_s"], clip["end_s"], match=False)
            wanted[name] = clip["clip_uri"]
    return wanted


def save_clips(
    conn: AnyConnection, result: dict[str, Any], save_dir: Path, *, every_clip: bool
) -> list[Path]:
    """Download the matched clips (every clip with every_clip) into save_dir."""
    store = conn.store()
    save_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    for name, uri in clip_files(result, every_clip=every_clip).items():
        dest = save_dir / name
        store.download(store.key_of(uri), dest)
        saved.append(dest)
    return saved


def clip_links(conn: Connection, result: dict[str, Any]) -> dict[str, str]:
    """s3 URI -> a presigned http URL, for every clip and match (valid LINK_EXPIRES_S)."""
    store = conn.store()
    uris = [m["clip_uri"] for m in result.get("matches", [])]
    uris += [c["clip_uri"] for c in result.get("clips", [])]
    return {u: store.presign(store.key_of(u), expires_s=LINK_EXPIRES_S) for u in uris}


class ClusterConnection:
    """Connection's counterpart for a cluster `up --backend kind|k8s` left running: the gateway
    and MinIO through this process's port-forwards, credentials read from the cluster."""

    def __init__(self, backend: Any) -> None:
        from harness.embedded.client import GatewayClient

        backend.attach()
        self.backend = backend
        self.gateway_url: str = backend.gateway_url
        self.bucket: str = backend.s3_settings().bucket
        self.gateway = GatewayClient(self.gateway_url, backend.gateway_auth())

    def store(self) -> Any:
        from base.storage import ObjectStore

        return ObjectStore(self.backend.s3_settings())

    def s3_client(self) -> Any:
        return self.store().client

    def close(self) -> None:
        self.gateway.close()
        self.backend.keep_cluster = True  # only this process's port-forwards
        self.backend.teardown()


#: What a search talks to: the embedded platform or a cluster.
AnyConnection = Connection | ClusterConnection


def run_search(
    video: Path,
    query: str,
    *,
    state_dir: Path,
    config: dict[str, Any] | None = None,
    quiet: bool = False,
    keep: bool = False,
    timeout_s: float = 900.0,
    save_dir: Path | None = None,
    save_all: bool = False,
    cluster: Any = None,
) -> dict[str, Any]:
    """Search one video; returns the orchestrator's answer (result or error envelope).

    With save_dir, the matched clips (save_all: every clip) are downloaded there; their paths
    are in answer["saved"]. While the platform stays up afterwards, answer["links"] maps each
    clip's s3 URI to a presigned http URL.
    """
    check_video(video)
    if not query.strip():
        raise UsageError("the query is empty")
    if cluster is not None:
        return _search_on_cluster(
            cluster, video, query, config=config, quiet=quiet, timeout_s=timeout_s,
            save_dir=save_dir, save_all=save_all,
        )  # fmt: skip
    started_here = not platform.running(state_dir)
    if started_here:
        say("starting the embedded platform (first start loads the models)…", quiet)
        if _to_stderr(platform.up, state_dir) != 0:
            raise UsageError(f"the platform did not start; see {state_dir / 'serve.log'}")
    try:
        client_started = time.monotonic()
        conn = Connection(state_dir)
        answer = _search_through(
            conn, video, query, config=config, quiet=quiet, timeout_s=timeout_s,
            save_dir=save_dir, save_all=save_all, started=client_started,
        )  # fmt: skip
        result = answer.get("outputs") if answer.get("status") == "ok" else None
        if result and (keep or not started_here):
            answer["links"] = clip_links(conn, result)
        return answer
    finally:
        if started_here and not keep:
            say("stopping the embedded platform (use --keep to leave it running)", quiet)
            _to_stderr(platform.down, state_dir)


def _search_on_cluster(
    backend: Any,
    video: Path,
    query: str,
    *,
    config: dict[str, Any] | None,
    quiet: bool,
    timeout_s: float,
    save_dir: Path | None,
    save_all: bool,
) -> dict[str, Any]:
    """As run_search, on the cluster: no presigned links (this process's MinIO port-forward,
    which they would point at, ends with it); --save downloads the clips."""
    from harness.backends.cluster.tools import ClusterError

    try:
        conn = ClusterConnection(backend)
    except ClusterError as exc:
        raise UsageError(
            f"{exc} (bring it up with `./vsearch up --backend {backend.name}`)"
        ) from exc
    try:
        answer = _search_through(
            conn, video, query, config=config, quiet=quiet, timeout_s=timeout_s,
            save_dir=save_dir, save_all=save_all, started=time.monotonic(),
        )  # fmt: skip
        answer["cluster"] = getattr(backend, "name", None) or "cluster"
        return answer
    finally:
        conn.close()


def _search_through(
    conn: AnyConnection,
    video: Path,
    query: str,
    *,
    config: dict[str, Any] | None,
    quiet: bool,
    timeout_s: float,
    save_dir: Path | None,
    save_all: bool,
    started: float,
) -> dict[str, Any]:
    """Upload, invoke the orchestrator (showing its progress), download what save_dir asks."""
    say(f"uploading {video.name} ({video.stat().st_size / 1e6:.1f} MB)", quiet)
    uri = upload(conn, video)
    # harness.workload.new_request_id's format; importing it would cost the CLI 1.5 s (numpy).
    request_id = f"cli-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    body = {
        "request_id": request_id,
        "input": {"video": uri},
        "config": {"query": query, **(config or {})},
    }
    with Progress(conn, request_id, quiet=quiet):
        response = conn.gateway.invoke("orchestrator", body, timeout_s=timeout_s)
    client_wall_s = time.monotonic() - started
    try:
        answer: dict[str, Any] = response.json()
    except ValueError:
        answer = {
            "status": "error",
            "error": {"code": "bad_response", "message": response.text},
        }
    answer["http_status"] = response.status_code
    # From the connection to the answer, as the user waits (less the platform's own start).
    answer["client_wall_s"] = round(client_wall_s, 4)
    result = answer.get("outputs") if answer.get("status") == "ok" else None
    if result and save_dir is not None:
        saved = save_clips(conn, result, save_dir, every_clip=save_all)
        answer["saved"] = [str(p) for p in saved]
        say(f"saved {len(saved)} clip(s) to {save_dir}", quiet)
    return answer


def run_inprocess(
    video: Path,
    query: str,
    *,
    config: dict[str, Any] | None = None,
    quiet: bool = False,
    warmup: bool = True,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Search one video with the in-process baseline (harness/backends/inprocess.py): the same
    handlers and DAG in this process, sequentially, no gateway and no S3. The answer has the
    orchestrator's envelope plus `baseline` (wall, CPU, model load) for the timed request."""
    check_video(video)
    if not query.strip():
        raise UsageError("the query is empty")
    from harness.backends.inprocess import InProcessBaseline

    say("in-process baseline: loading every stage (models once)", quiet)
    with _logs_to(log_path), InProcessBaseline() as baseline:
        if warmup:
            say("in-process baseline: warm-up request (not timed)", quiet)
            baseline.search(video, query, config)
        run = baseline.search(video, query, config)
        answer = run.answer
        answer["baseline"] = {**_figures(run), "load_s": baseline.load_s}
    return answer


def _to_stderr(action: Any, state_dir: Path) -> int:
    """Starting or stopping the platform prints its status: stdout is for the answer."""
    with contextlib.redirect_stdout(sys.stderr):
        return int(action(state_dir))


@contextlib.contextmanager
def _logs_to(path: Path | None) -> Iterator[None]:
    """The stages' JSON log lines (stdout in a function) go to a file: stdout is the answer."""
    if path is None:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as sink, contextlib.redirect_stdout(sink):
        yield


def _figures(run: Any) -> dict[str, Any]:
    """A baseline run's row: its answer's figures and what it cost this process."""
    return {
        **_answer_figures(run.answer),
        "wall_s": round(run.wall_s, 4),
        "cpu_s": round(run.cpu_s, 4),
    }


def _answer_figures(answer: dict[str, Any]) -> dict[str, Any]:
    """What a comparison row holds of any answer, serverless or in-process: its status, the
    stage functions' CPU-seconds (in all and per stage) and the clips it matched."""
    return {
        "status": answer.get("status"),
        "function_cpu_s": round(function_cpu_s(answer), 4),
        "stages": stage_figures(answer),
        "matches": _matches(answer),
    }


def _matches(answer: dict[str, Any]) -> list[int] | None:
    result = answer.get("outputs") or {}
    if answer.get("status") != "ok":
        return None
    return sorted(m["clip_index"] for m in result.get("matches") or [])


def run_side_by_side(
    video: Path,
    query: str,
    *,
    state_dir: Path,
    config: dict[str, Any] | None = None,
    repeat: int = 3,
    quiet: bool = False,
    keep: bool = False,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serverless and the in-process baseline, alternating request by request on one machine
    (so both see the same background load): one untimed warm-up pair, then `repeat` pairs.
    Returns the last serverless answer and the comparison of medians."""
    check_video(video)
    if not query.strip():
        raise UsageError("the query is empty")
    from harness.backends.inprocess import InProcessBaseline

    started_here = not platform.running(state_dir)
    if started_here:
        say("starting the embedded platform (first start loads the models)…", quiet)
        if _to_stderr(platform.up, state_dir) != 0:
            raise UsageError(f"the platform did not start; see {state_dir / 'serve.log'}")
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    try:
        say("in-process baseline: loading every stage (models once)", quiet)
        with _logs_to(state_dir / "inprocess.log"), InProcessBaseline() as baseline:
            answer: dict[str, Any] = {}
            for n in range(repeat + 1):
                label = "warm-up pair (not counted)" if n == 0 else f"pair {n}/{repeat}"
                say(f"side by side: {label}: serverless, then in-process", quiet)
                answer = run_search(
                    video, query, state_dir=state_dir, config=config, quiet=True, keep=True
                )
                run = baseline.search(video, query, config)
                if n:
                    pairs.append((answer, _figures(run)))
            load_s = dict(baseline.load_s)
    finally:
        if started_here and not keep:
            say("stopping the embedded platform (use --keep to leave it running)", quiet)
            _to_stderr(platform.down, state_dir)
    return answer, comparison(pairs, load_s=load_s)


def function_cpu_s(answer: dict[str, Any]) -> float:
    """CPU seconds the stage functions spent on a request (their own figures, fresh calls)."""
    result = answer.get("outputs") or {}
    invocations = (result.get("metrics") or {}).get("invocations") or []
    return sum(
        float((inv.get("metrics") or {}).get("cpu_s") or 0.0)
        for inv in invocations
        if not inv.get("reused")
    )


#: Per-stage figures summed over a request's fresh invocations (see `stage_figures`).
STAGE_FIGURES = ("cpu_s", "children_cpu_s", "wall_s", "download_s", "upload_s")


def stage_figures(answer: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per stage function: calls, CPU-seconds (all, and of its child processes: ffmpeg,
    ffprobe), wall and transfer seconds, and bytes moved, summed over a request's fresh
    invocations. Where the CPU of one request goes, stage by stage."""
    result = answer.get("outputs") or {}
    invocations = (result.get("metrics") or {}).get("invocations") or []
    stages: dict[str, dict[str, float]] = {}
    for inv in invocations:
        metrics = inv.get("metrics") or {}
        if inv.get("reused") or not metrics:
            continue
        row = stages.setdefault(
            str(inv.get("function")),
            {"calls": 0, **dict.fromkeys(STAGE_FIGURES, 0.0), "bytes_moved": 0},
        )
        row["calls"] += 1
        for key in STAGE_FIGURES:
            row[key] = round(row[key] + float(metrics.get(key) or 0.0), 4)
        row["bytes_moved"] += int(metrics.get("bytes_downloaded") or 0) + int(
            metrics.get("bytes_uploaded") or 0
        )
    return dict(sorted(stages.items()))


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def comparison(
    pairs: list[tuple[dict[str, Any], dict[str, Any]]], *, load_s: dict[str, float] | None = None
) -> dict[str, Any]:
    """Serverless answers against baseline figures, pair by pair, and the ratio of medians."""
    rows = []
    for serverless, base in pairs:
        request = ((serverless.get("outputs") or {}).get("metrics") or {}).get("request") or {}
        e2e, client = request.get("end_to_end_s"), serverless.get("client_wall_s")
        rows.append(
            {
                "serverless": {
                    **_answer_figures(serverless),
                    "end_to_end_s": e2e,
                    "critical_path_s": request.get("critical_path_s"),
                    "overhead_s": request.get("overhead_s"),
                    "client_wall_s": client,
                    "cli_overhead_s": round(client - e2e, 4) if client and e2e else None,
                },
                "baseline": base,
            }
        )
    ok = [r for r in rows if r["serverless"]["status"] == "ok" and r["baseline"]["status"] == "ok"]

    def med(side: str, key: str) -> float | None:
        return _median([float(r[side][key]) for r in ok if r[side].get(key) is not None])

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    e2e, base_wall = med("serverless", "end_to_end_s"), med("baseline", "wall_s")
    cpu, base_cpu = med("serverless", "function_cpu_s"), med("baseline", "function_cpu_s")
    overhead, client = med("serverless", "overhead_s"), med("serverless", "client_wall_s")
    cli = med("serverless", "cli_overhead_s")
    return {
        "pairs": len(rows),
        "pairs_ok": len(ok),
        "same_matches": all(r["serverless"]["matches"] == r["baseline"]["matches"] for r in ok),
        "serverless": {
            "end_to_end_p50_s": e2e,
            "function_cpu_s_p50": cpu,
            "overhead_p50_s": overhead,
            "overhead_share": ratio(overhead, e2e),
            "client_wall_p50_s": client,
            "cli_overhead_p50_s": cli,
            "cli_overhead_share": ratio(cli, client),
        },
        "baseline": {
            "wall_p50_s": base_wall,
            "function_cpu_s_p50": base_cpu,
            "process_cpu_s_p50": med("baseline", "cpu_s"),
            "load_s": load_s or {},
        },
        "ratio": {"end_to_end": ratio(e2e, base_wall), "function_cpu": ratio(cpu, base_cpu)},
        "stage_cpu_s_p50": _stage_cpu(ok),
        "rows": rows,
    }


def _stage_cpu(ok: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Median CPU-seconds per stage, serverless against baseline, and their ratio."""
    names = sorted({n for r in ok for side in r.values() for n in side.get("stages") or {}})
    out: dict[str, dict[str, float | None]] = {}
    for name in names:

        def cpu(row: dict[str, Any], name: str = name) -> float:
            return float(((row.get("stages") or {}).get(name) or {}).get("cpu_s", 0.0))

        med = {side: _median([cpu(r[side]) for r in ok]) for side in ("serverless", "baseline")}
        s, b = med["serverless"], med["baseline"]
        out[name] = {**med, "ratio": round(s / b, 3) if s is not None and b else None}
    return out


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_comparison(cmp: dict[str, Any]) -> str:
    s, b, r, f = cmp["serverless"], cmp["baseline"], cmp["ratio"], _f
    return (
        f"vs in-process baseline ({cmp['pairs_ok']}/{cmp['pairs']} pairs ok, medians, same "
        f"matches: {'yes' if cmp['same_matches'] else 'NO'}): end-to-end "
        f"{f(s['end_to_end_p50_s'])} s vs {f(b['wall_p50_s'])} s (x{f(r['end_to_end'])}), "
        f"function CPU {f(s['function_cpu_s_p50'])} s vs {f(b['function_cpu_s_p50'])} s "
        f"(x{f(r['function_cpu'])}); baseline process CPU {f(b['process_cpu_s_p50'])} s; "
        f"platform overhead {f(s['overhead_p50_s'])} s ({f(s['overhead_share'])}); CLI overhead "
        f"{f(s['cli_overhead_p50_s'])} s of {f(s['client_wall_p50_s'])} s"
        + _render_stages(cmp.get("stage_cpu_s_p50") or {})
    )


def _render_stages(stages: dict[str, dict[str, float | None]]) -> str:
    if not stages:
        return ""
    parts = [f"{n} {_f(v['serverless'])}/{_f(v['baseline'])}" for n, v in stages.items()]
    return "\nstage CPU-s, serverless/baseline (medians): " + ", ".join(parts)


def say(text: str, quiet: bool) -> None:
    if not quiet:
        print(f"vsearch: {text}", file=sys.stderr, flush=True)


def render(answer: dict[str, Any]) -> str:
    """The answer for a person: matches first, then every clip, then where the time went."""
    if answer.get("status") != "ok":
        error = answer.get("error") or {}
        status = answer.get("http_status")
        return f"search failed ({status}): {error.get('code')}: {error.get('message')}"
    result = answer.get("outputs") or answer
    links: dict[str, str] = answer.get("links") or {}
    video = result["video"]
    lines = [
        f"video:   {Path(video['source_uri']).name}  {video['duration_s']:.1f} s  "
        f"{video.get('width') or '-'}x{video.get('height') or '-'}  "
        f"audio: {'yes' if video['has_audio'] else 'no'}  sha256 {video['sha256'][:12]}…",
        f'query:   "{result["query"]}" — {len(result["matches"])} matching clip(s)',
    ]
    clips = {clip["index"]: clip for clip in result["clips"]}
    for match in result["matches"]:
        clip = clips.get(match["clip_index"], {})
        lines.append(
            f"  MATCH clip {match['clip_index']}  {match['start_s']:.2f}-{match['end_s']:.2f} s  "
            f"{_kind(match)}  "
            f'"{match["text"]}"{_objects(clip.get("objects", []))}'
        )
        if match.get("kind", "exact") != "exact":
            why = ", ".join(f'"{w["heard"]}" ~ "{w["query"]}"' for w in match.get("why", []))
            lines.append(f"        heard: {why}")
        lines.append(f"        {links.get(match['clip_uri'], match['clip_uri'])}")
    lines.append(f"clips:   {len(result['clips'])}")
    for clip in result["clips"]:
        lines.append(
            f"  clip {clip['index']}  {clip['start_s']:.2f}-{clip['end_s']:.2f} s  "
            f'"{clip.get("transcript") or ""}"{_objects(clip.get("objects", []))}'
        )
    if result.get("frames_without_clip"):
        objects = [o for f in result["frames_without_clip"] for o in f.get("objects", [])]
        lines.append(f"whole-video frames: {len(result['frames_without_clip'])}{_objects(objects)}")
    if answer.get("saved"):
        lines.append(f"saved:   {len(answer['saved'])} clip(s)")
        lines += [f"  {path}" for path in answer["saved"]]
    elif result["matches"] and not links and answer.get("cluster"):
        lines.append(
            "note:    the clips stay in the cluster's MinIO under the s3:// keys above; "
            "--save DIR downloads them"
        )
    elif result["matches"] and not links:
        lines.append(
            "note:    the platform stopped on exit, so the s3:// clips cannot be opened now; "
            "--save DIR downloads them, --keep leaves the platform up and prints http links"
        )
    if links:
        lines.append(f"links:   presigned http URLs, valid {LINK_EXPIRES_S // 60} min")
    req = result["metrics"]["request"]
    lines.append(
        f"timing:  end-to-end {req['end_to_end_s']:.2f} s, critical path "
        f"{req['critical_path_s']:.2f} s, overhead {req['overhead_s']:.2f} s, "
        f"{req['invocations']} invocations, {req['cold_starts']} cold start(s), "
        f"{req['retries']} retries"
    )
    return "\n".join(lines)


def _kind(match: dict[str, Any]) -> str:
    """`exact 1.00`, `phonetic 0.85`, ...: how the match was found and how sure it is."""
    return f"{match.get('kind', 'exact')} {float(match.get('score', 1.0)):.2f}"


def _objects(objects: list[dict[str, Any]]) -> str:
    best: dict[str, float] = {}
    for obj in objects:
        best[obj["label"]] = max(best.get(obj["label"], 0.0), obj["score"])
    if not best:
        return ""
    return "  objects: " + ", ".join(f"{k} ({v:.2f})" for k, v in sorted(best.items()))


def print_answer(
    answer: dict[str, Any], *, as_json: bool, compared: dict[str, Any] | None = None
) -> int:
    """The answer (and, with --baseline, its comparison with the in-process baseline)."""
    if as_json:
        result = answer.get("outputs") if answer.get("status") == "ok" else answer
        if compared is not None:
            result = {**result, "comparison": compared}
        if "baseline" in answer:
            result = {**result, "baseline": answer["baseline"]}
        output.print_json(result)
    else:
        print(render(answer))
        if "baseline" in answer:
            b = answer["baseline"]
            print(
                f"in-process baseline: wall {b['wall_s']:.2f} s, process CPU {b['cpu_s']:.2f} s, "
                f"stage CPU {b['function_cpu_s']:.2f} s (models loaded once, before the request)"
            )
        if compared is not None:
            print(render_comparison(compared))
    return 0 if answer.get("status") == "ok" else 1
