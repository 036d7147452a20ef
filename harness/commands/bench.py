"""`./vsearch bench REGIME...` and `./vsearch report DIR...`.

bench: each regime on a fresh platform (deploy, scale and verify, open-loop load), a live
progress line while it runs, the summary table at the end and the report files in --out
(results.json, requests.csv, invocations.csv, PNG plots). report: runs side by side.

Exit codes: 0 every threshold met, 1 a threshold missed, 2 usage, 3 the platform could not be
deployed or prepared.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from harness.commands import output
from harness.media.generate import VideoTruth, demo_video, truth_path_for
from harness.regimes import SIZES, Regime, Size, load_regimes
from harness.report import (
    RegimeResult,
    compare,
    load_results,
    render_significance,
    render_summary,
    significance,
    versions_line,
    write_report,
)
from harness.workload import Progress

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / ".vsearch" / "bench"
DEMO_QUERY = "flour"


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------------------------
# Live display
# --------------------------------------------------------------------------------------------


class LiveDisplay:
    """One status line per regime on stderr: the phase and, during the load, completed /
    failed / in flight / current rate. Redrawn in place every second on a terminal (a thread
    keeps the clock moving through a silent deploy); elsewhere a line every ``log_every_s``."""

    def __init__(self, stream: TextIO | None = None, *, log_every_s: float = 15.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.log_every_s = log_every_s
        self._lock = threading.Lock()
        self._regime = ""
        self._phase = ""
        self._detail = ""
        self._phase_began = time.monotonic()
        self._progress: Progress | None = None
        self._last_log = 0.0
        self._last_key: tuple[int, int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LiveDisplay:
        if self.tty:
            self._thread = threading.Thread(target=self._tick, daemon=True, name="display")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._end_line()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                self._draw()

    def phase(self, regime: Regime) -> Any:
        def on_phase(phase: str, detail: str = "") -> None:
            with self._lock:
                self._end_line()
                self._regime, self._phase, self._detail = regime.name, phase, detail
                self._phase_began = time.monotonic()
                self._progress = None
                if self.tty:
                    self._draw()
                else:
                    self._write(self._line() + "\n")

        return on_phase

    def progress(self, regime: Regime) -> Any:
        def on_progress(p: Progress) -> None:
            with self._lock:
                self._progress = p
                if self.tty:
                    self._draw()
                    return
                key = (p.completed, p.failed, p.issued)
                now = time.monotonic()
                if key != self._last_key or now - self._last_log >= self.log_every_s:
                    self._last_key, self._last_log = key, now
                    self._write(self._line() + "\n")

        return on_progress

    def result(self, result: RegimeResult) -> None:
        with self._lock:
            self._end_line()
            s = result.summary
            verdict = "pass" if result.passed else f"FAIL ({len(result.violations)} violations)"
            lat = s.latency_ok_s
            p50 = "-" if lat.p50 is None else f"{lat.p50:.1f}s"
            p95 = "-" if lat.p95 is None else f"{lat.p95:.1f}s"
            self._write(
                f"[{result.name}] done: {s.outcomes.ok}/{s.outcomes.total} ok, p50 {p50}, "
                f"p95 {p95} — {verdict}\n"
            )
            for v in result.violations:
                self._write(f"    {v.message}\n")
            self._phase = ""

    def note(self, message: str) -> None:
        with self._lock:
            self._end_line()
            self._write(f"vsearch bench: {message}\n")

    def fail(self, message: str) -> None:
        with self._lock:
            self._end_line()
            self._phase = ""
            self._write(f"vsearch bench: {message}\n")

    def _line(self) -> str:
        elapsed = time.monotonic() - self._phase_began
        head = f"[{self._regime}] {self._phase} {elapsed:5.0f}s"
        p = self._progress
        if p is None:
            return f"{head}  {self._detail}" if self._detail else head
        return (
            f"{head}  sent {p.issued}/{p.scheduled}  completed {p.completed}  "
            f"failed {p.failed}  in flight {p.in_flight}  "
            f"rate {p.completion_rate:.2f}/s" + (f"  not sent {p.not_sent}" if p.not_sent else "")
        )

    def _draw(self) -> None:
        if self._phase:
            self._write("\r\x1b[2K" + self._line()[:160])

    def _end_line(self) -> None:
        if self.tty and self._phase:
            self._write("\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed terminal must not end the benchmark


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------


def _load(path: Path | None) -> Any:
    from pydantic import ValidationError

    try:
        return load_regimes(path) if path is not None else load_regimes()
    except (OSError, ValidationError, ValueError) as exc:
        raise UsageError(f"regimes file {path}: {exc}") from None


def resolve_regimes(names: Sequence[str], size: Size, path: Path | None = None) -> list[Regime]:
    regimes = _load(path)
    if size not in SIZES:
        raise UsageError(f"--size must be one of {', '.join(SIZES)}")
    unknown = [n for n in names if n not in regimes.names]
    if unknown:
        raise UsageError(
            f"unknown regime(s) {', '.join(unknown)}; known: {', '.join(regimes.names)}"
        )
    return regimes.resolve(size, list(dict.fromkeys(names)))


def needs_baseline(regimes: Sequence[Regime]) -> bool:
    """Whether any regime's thresholds or workload refer to the run's warm baseline."""
    for r in regimes:
        t = r.thresholds
        if r.workload.rate_x_capacity is not None or t.min_goodput_share is not None:
            return True
        if any(getattr(t, f"max_{stat}_ratio") is not None for stat in ("p50", "p95", "max")):
            return True
    return False


def media_for(video: Path | None, query: str | None, media_dir: Path) -> tuple[Any, bool, str]:
    """(Media, content verified?, note) for the run; the demo video unless --video."""
    from harness.commands.search import UsageError as SearchUsage
    from harness.commands.search import check_video
    from harness.runner import Media

    if video is None:
        truth = demo_video(media_dir)
        return (
            Media(path=Path(truth.path), query=query or DEMO_QUERY, truth=truth, id="demo"),
            True,
            f"demo video {truth.path} (known speech and objects), query {query or DEMO_QUERY!r}",
        )
    try:
        check_video(video)
    except SearchUsage as exc:
        raise UsageError(str(exc)) from None
    if not query:
        raise UsageError("--video needs --query WORDS")
    truth_file = truth_path_for(video)
    if truth_file.exists():
        truth = VideoTruth.load(truth_file)
        note = f"{video} with its truth {truth_file.name}: content checked"
        return Media(path=video, query=query, truth=truth, id=video.stem), True, note
    note = (
        f"{video} has no {truth_file.name}: success means a well-formed answer, the content is "
        "NOT verified"
    )
    return Media(path=video, query=query, truth=None, id=video.stem), False, note


def _create_backend(
    backend_name: str,
    state_dir: Path | None,
    no_limits: bool,
    backend_options: dict[str, Any] | None,
) -> Any:
    from harness.backends.factory import BackendUnavailable, create_backend

    try:
        return create_backend(
            backend_name,
            state_dir=state_dir,
            enforce_limits=not no_limits,
            **(backend_options or {}),
        )
    except BackendUnavailable as exc:
        raise UsageError(str(exc)) from None


@dataclass
class _Session:
    """Regimes run one after another on one backend, shown live on stderr: each result kept
    in order, with the platform's description from the latest run."""

    backend: Any
    media: Any
    verified: bool
    display: LiveDisplay = field(default_factory=LiveDisplay)
    results: list[RegimeResult] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def deployed(self, log_path: Path) -> Iterator[LiveDisplay]:
        """Regimes share the backend's deploy where their declarations match: stop it at the
        end. The in-process platform logs JSON lines to stdout: they go to log_path, as stdout
        is for the table (or --json)."""
        with log_path.open("a") as log_file, contextlib.redirect_stdout(log_file), self.display:
            try:
                yield self.display
            finally:
                self.backend.teardown()

    def run(
        self, regime: Regime, *, baseline: Any = None, show: bool = True
    ) -> tuple[RegimeResult, int]:
        """Run one regime: its result (also appended to ``results``) and the cores it had."""
        from harness.runner import RegimeRun

        run = RegimeRun(
            self.backend,
            regime,
            self.media,
            progress=self.display.progress(regime),
            on_phase=self.display.phase(regime),
            require_truth=self.verified,
            keep_platform=True,
            baseline=baseline,
        )
        result = run.run()
        self.description = run.platform_description or self.description
        self.results.append(result)
        if show:
            self.display.result(result)
        return result, run.cores


def run_bench(
    names: Sequence[str],
    *,
    backend_name: str = "embedded",
    size: Size = "small",
    video: Path | None = None,
    query: str | None = None,
    out: Path | None = None,
    as_json: bool = False,
    state_dir: Path | None = None,
    no_limits: bool = False,
    media_dir: Path = ROOT / ".vsearch" / "media",
    backend_options: dict[str, Any] | None = None,
    inprocess_baseline: bool = False,
    baseline_requests: int = 3,
    regimes_file: Path | None = None,
) -> int:
    from harness.runner import PreparationError, baseline_from

    regimes = resolve_regimes(names, size, regimes_file)
    baseline_regime = _load(regimes_file).baseline_for(size) if needs_baseline(regimes) else None
    backend = _create_backend(backend_name, state_dir, no_limits, backend_options)
    media, verified, note = media_for(video, query, media_dir)
    out = out or DEFAULT_OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-{'+'.join(names)}"
    err = sys.stderr
    print(
        f"vsearch bench: {', '.join(r.name for r in regimes)} ({size}) on {backend_name}", file=err
    )
    print(f"vsearch bench: {note}", file=err)
    print(f"vsearch bench: report in {out}", file=err)

    config = {
        "regimes_file": str(regimes_file) if regimes_file else "harness/regimes.yaml",
        "backend": backend_name,
        "size": size,
        "regimes": [r.model_dump(mode="json") for r in regimes],
        "query": media.query,
        "content_verified": verified,
        "peak_memory_scope": "per regime: from the end of each regime's preparation (the "
        "gateway's window reset; consecutive regimes with the same declarations share a deploy)",
    }
    videos = [{"id": media.id, "path": str(media.path), "truth": media.truth}]
    code = 0

    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "platform.log"
    print(f"vsearch bench: platform log in {log_path}", file=err)
    session = _Session(backend, media, verified)
    results = session.results

    def save(plots: bool) -> dict[str, Path]:
        return write_report(
            out, results, platform=session.description, config=config, videos=videos, plots=plots
        )

    with session.deployed(log_path) as display:
        baseline = None
        todo = ([baseline_regime] if baseline_regime is not None else []) + list(regimes)
        for regime in todo:
            is_baseline = regime is baseline_regime
            try:
                result, cores = session.run(regime, baseline=baseline)
                if is_baseline:
                    baseline = baseline_from(result, cores)
                    config["baseline"] = baseline.model_dump(mode="json")
            except PreparationError as exc:
                display.fail(str(exc))
                code = 3
                break
            except KeyboardInterrupt:
                display.fail("interrupted; the report holds the regimes finished before")
                code = 130
                break
            except Exception as exc:  # e.g. a platform that does not come up: say what it was
                display.fail(f"{regime.name}: {type(exc).__name__}: {exc}")
                code = 3
                break
            if is_baseline and baseline is not None:
                display.note(
                    f"baseline: warm request {baseline.latency_s:.2f}s, "
                    f"{baseline.cpu_s or 0:.2f} CPU-s -> CPU-bound cap "
                    f"{baseline.capacity_per_s or 0:.3f}/s on {baseline.cores:g} cores"
                )
            save(plots=False)  # partial results survive a later crash
    if not results:
        return code
    compared: dict[str, Any] | None = None
    if inprocess_baseline and code == 0:
        print("vsearch bench: in-process baseline (same handlers, one process)", file=err)
        with log_path.open("a") as log_file, contextlib.redirect_stdout(log_file):
            base = measure_baseline(media, requests=baseline_requests)
        compared = compare_with_baseline(results, base)
        config["inprocess_baseline"] = compared
        (out / "baseline.json").write_text(json.dumps(compared, indent=2) + "\n")
    files = save(plots=True)
    summary = f"platform: {versions_line(session.description.get('versions') or {})}\n"
    summary += render_summary(results)
    if compared is not None:
        summary += "\n\n" + render_baseline(compared)
    if as_json:
        print(summary, file=err)
        output.write_result(files["results"].read_text())
    else:
        print()
        print(summary)
        print()
        print(f"report: {out}")
        for name, path in {**files, "platform log": log_path}.items():
            print(f"  {name:<20} {path.name}")
    if code:
        return code
    return 0 if all(r.passed for r in results) else 1


# --------------------------------------------------------------------------------------------
# the in-process baseline, measured in the same run
# --------------------------------------------------------------------------------------------


def measure_baseline(media: Any, *, requests: int = 3) -> dict[str, Any]:
    """The same video and query through the in-process baseline: one warm-up request, then
    `requests` timed ones, each checked against the truth like the regimes' answers."""
    from harness.backends.inprocess import InProcessBaseline
    from harness.commands.search import function_cpu_s
    from harness.records import check_content, content_ok

    runs = []
    with InProcessBaseline() as baseline:
        baseline.search(Path(media.path), media.query)
        for _ in range(requests):
            run = baseline.search(Path(media.path), media.query)
            ok = run.answer.get("status") == "ok"
            if ok and media.truth is not None:
                ok = content_ok(check_content(run.answer, media.truth, query=media.query))
            runs.append(
                {
                    "ok": ok,
                    "wall_s": round(run.wall_s, 4),
                    "cpu_s": round(run.cpu_s, 4),
                    "function_cpu_s": round(function_cpu_s(run.answer), 4),
                }
            )
        load_s = dict(baseline.load_s)
    return {"requests": runs, "load_s": load_s}


def _median(values: Sequence[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def compare_with_baseline(results: Sequence[RegimeResult], base: dict[str, Any]) -> dict[str, Any]:
    """Per regime: p50 end-to-end and mean function CPU per request against the baseline's."""
    ok_runs = [r for r in base["requests"] if r["ok"]]
    base_wall = _median([r["wall_s"] for r in ok_runs])
    base_cpu = _median([r["function_cpu_s"] for r in ok_runs])
    rows = []
    for result in results:
        measured = [r for r in result.records if r.ok and r.phase == "measure"]
        metrics = [r.request_metrics or {} for r in measured]
        e2e = [float(m["end_to_end_s"]) for m in metrics if m.get("end_to_end_s")]
        overhead = [
            float(m["overhead_s"]) / float(m["end_to_end_s"])
            for m in metrics
            if m.get("end_to_end_s") and m.get("overhead_s") is not None
        ]
        cpu = [
            sum(
                i.cpu_s or 0.0
                for i in r.invocations
                if not i.reused and i.function != "orchestrator"
            )
            for r in measured
        ]
        cpu_p50 = _median(cpu)
        latency = [r.latency_s for r in measured if r.latency_s is not None]
        p50 = _median(e2e)
        rows.append(
            {
                "regime": result.name,
                "requests_ok": len(measured),
                "end_to_end_p50_s": p50,
                "latency_p50_s": _median(latency),
                "overhead_share_p50": _median(overhead),
                "function_cpu_s_p50": cpu_p50,
                "end_to_end_vs_baseline": round(p50 / base_wall, 3) if p50 and base_wall else None,
                "cpu_vs_baseline": round(cpu_p50 / base_cpu, 3) if cpu_p50 and base_cpu else None,
            }
        )
    by_name = {row["regime"]: row for row in rows}
    cold, warm = by_name.get("cold-burst"), by_name.get("warm-steady")
    cold_vs_warm = None
    if cold and warm and cold["latency_p50_s"] and warm["latency_p50_s"]:
        cold_vs_warm = round(cold["latency_p50_s"] / warm["latency_p50_s"], 3)
    return {
        "baseline": {
            "requests_ok": len(ok_runs),
            "requests": len(base["requests"]),
            "wall_p50_s": base_wall,
            "function_cpu_s_p50": base_cpu,
            "process_cpu_s_p50": _median([r["cpu_s"] for r in ok_runs]),
            "load_s": base["load_s"],
            "runs": base["requests"],
        },
        "regimes": rows,
        "cold_burst_vs_warm_steady_p50": cold_vs_warm,
    }


def render_baseline(cmp: dict[str, Any]) -> str:
    b = cmp["baseline"]

    def f(value: Any, unit: str = "") -> str:
        return "-" if value is None else f"{value:.2f}{unit}"

    lines = [
        f"in-process baseline ({b['requests_ok']}/{b['requests']} ok): p50 wall "
        f"{f(b['wall_p50_s'], ' s')}, stage CPU {f(b['function_cpu_s_p50'], ' s')}, process CPU "
        f"{f(b['process_cpu_s_p50'], ' s')}",
        f"{'regime':<14}{'e2e p50':>9}{'x base':>8}{'CPU-s':>8}{'x base':>8}{'overhead':>10}",
    ]
    for row in cmp["regimes"]:
        share = row["overhead_share_p50"]
        lines.append(
            f"{row['regime']:<14}{f(row['end_to_end_p50_s']):>9}"
            f"{f(row['end_to_end_vs_baseline']):>8}{f(row['function_cpu_s_p50']):>8}"
            f"{f(row['cpu_vs_baseline']):>8}{'-' if share is None else f'{share:.0%}':>10}"
        )
    ratio = cmp.get("cold_burst_vs_warm_steady_p50")
    if ratio is not None:
        lines.append(f"cold-burst p50 / warm-steady p50: {ratio:.2f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def run_report(
    dirs: Sequence[Path],
    *,
    as_json: bool = False,
    calibrate: bool = False,
    no_gate: bool = False,
) -> int:
    """One DIR: its summary. Two: side by side, then B against A with significance tests (exit
    1 on a significant regression unless ``no_gate``). ``calibrate``: budgets and limit
    sizing from the runs."""
    for d in dirs:
        path = d / "results.json" if d.is_dir() else d
        if not path.exists():
            raise UsageError(f"no results.json in {d}")
    if calibrate:
        from harness.calibrate import run_calibrate

        print(run_calibrate(dirs))
        return 0
    if as_json:
        rows = []
        for d in dirs:
            run = load_results(d)
            for reg in run.regimes:
                rows.append({"run": str(d), **comparison_row(reg)})
        output.print_json(rows)
        return 0
    if len(dirs) == 1:
        run = load_results(dirs[0])
        platform = run.platform
        print(
            f"{dirs[0]}: backend {platform.get('backend', '?')}, limits "
            f"{'enforced' if platform.get('limits_enforced') else 'NOT enforced'}"
            f" ({platform.get('limits_reason', '?')}), python {platform.get('python', '?')}, "
            f"ffmpeg {platform.get('ffmpeg', '?')}, {platform.get('cpus', '?')} CPUs"
        )
        print(f"platform: {versions_line(run.versions)}")
        print(render_summary(run.regimes))
        return 0
    print(compare(dirs))
    if len(dirs) != 2:
        return 0
    a, b = load_results(dirs[0]), load_results(dirs[1])
    checks = significance(a, b)
    print()
    print(render_significance(checks, dirs[0].name, dirs[1].name))
    bad = [c for c in checks if c.regression]
    for c in bad:
        print(
            f"regression: {c.regime}: {c.figure} {c.a:.3g} -> {c.b:.3g} (p={c.p_value:.3g})",
            file=sys.stderr,
        )
    return 1 if bad and not no_gate else 0


def comparison_row(reg: RegimeResult) -> dict[str, Any]:
    s = reg.summary
    res = reg.resources
    return {
        "regime": reg.name,
        "ok": s.outcomes.ok,
        "total": s.outcomes.total,
        "success_rate": s.success_rate,
        "p50_s": s.latency_ok_s.p50,
        "p95_s": s.latency_ok_s.p95,
        "gb_s_per_ok_measured": s.cost.per_ok_request_measured_gb_s,
        "gb_s_per_ok_configured": s.cost.per_ok_request_configured_gb_s,
        "throughput_ok_per_s": res.throughput_ok_per_s if res else None,
        "cpu_bound_limit_per_s": res.cpu_bound_limit_per_s if res else None,
        "oom_kills": s.oom_kills,
        "violations": [v.message for v in reg.violations],
    }


# --------------------------------------------------------------------------------------------
# capacity
# --------------------------------------------------------------------------------------------


def run_capacity(
    *,
    backend_name: str = "embedded",
    size: Size = "small",
    video: Path | None = None,
    query: str | None = None,
    out: Path | None = None,
    state_dir: Path | None = None,
    no_limits: bool = False,
    media_dir: Path = ROOT / ".vsearch" / "media",
    backend_options: dict[str, Any] | None = None,
    regimes_file: Path | None = None,
) -> int:
    """`./vsearch bench capacity`: the baseline, then open-loop steps at rising multiples of
    its CPU-bound cap until success or latency breaks (harness/capacity.py). Exit 0 when a
    sustainable rate was found, 1 when none, 3 on a platform problem."""
    from harness.capacity import (
        capacity_result,
        judge_step,
        next_rate,
        plot_capacity,
        render_capacity_result,
    )
    from harness.regimes import Thresholds, Workload
    from harness.runner import PreparationError, baseline_from

    regimes = _load(regimes_file)
    config = regimes.capacity
    base_regime = regimes.baseline_for(size)
    if config is None or base_regime is None:
        raise UsageError("regimes.yaml has no capacity: or baseline: section")
    backend = _create_backend(backend_name, state_dir, no_limits, backend_options)
    media, verified, note = media_for(video, query, media_dir)
    out = out or DEFAULT_OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-capacity"
    err = sys.stderr
    print(f"vsearch bench: capacity on {backend_name}; {note}", file=err)
    print(f"vsearch bench: report in {out}", file=err)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[Any] = []
    baseline = None
    code = 0
    session = _Session(backend, media, verified)
    with session.deployed(out / "platform.log") as display:
        try:
            result, cores = session.run(base_regime)
            baseline = baseline_from(result, cores)
            cap = baseline.capacity_per_s
            if not cap:
                raise PreparationError("the baseline reported no CPU-seconds: no cap to step")
            display.note(
                f"baseline {baseline.latency_s:.2f}s, {baseline.cpu_s:.2f} CPU-s/request -> "
                f"CPU-bound cap {cap:.3f}/s on {baseline.cores:g} cores"
            )
            while (x := next_rate(steps, config)) is not None:
                rate = x * cap
                regime = Regime(
                    name=f"capacity-step{len(steps) + 1}",
                    description=f"open loop at {x:.2f}x the CPU-bound cap ({rate:.3f}/s)",
                    preparation=config.preparation,
                    workload=Workload(
                        kind="steady",
                        rate=rate,
                        count=config.requests_per_step,
                        request_timeout_s=config.request_timeout_s,
                    ),
                    thresholds=Thresholds(min_success_rate=config.min_success_rate),
                )
                # The verdict below, not the regime's own thresholds, says how a step went.
                step_result, _ = session.run(regime, baseline=baseline, show=False)
                step = judge_step(
                    step_result.summary,
                    rate_x=x,
                    rate_per_s=rate,
                    baseline=baseline,
                    config=config,
                    records=step_result.records,
                )
                steps.append(step)
                verdict = "sustainable" if step.sustainable else f"broken: {step.reason}"
                display.note(f"{regime.name} at {x:.2f}x cap ({rate:.3f}/s): {verdict}")
        except (PreparationError, Exception) as exc:
            display.fail(f"{type(exc).__name__}: {exc}")
            code = 3
    if baseline is None:
        return code or 3
    outcome = capacity_result(steps, baseline, config)
    files = write_report(
        out,
        session.results,
        platform=session.description,
        config={
            "size": size,
            "capacity": outcome.model_dump(mode="json"),
            "capacity_config": config.model_dump(mode="json"),
        },
        videos=[{"id": media.id, "path": str(media.path)}],
    )
    (out / "capacity.json").write_text(outcome.model_dump_json(indent=1) + "\n")
    import matplotlib.pyplot as plt

    fig = plot_capacity(outcome)
    try:
        fig.savefig(out / "capacity.png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    print(render_capacity_result(outcome))
    print(f"\nreport: {out}\n  capacity.png, capacity.json, {files['results'].name}")
    if code:
        return code
    return 0 if outcome.sustainable_rate_per_s is not None else 1
