"""Benchmark output: results.json, CSVs, PNG plots, terminal tables and run comparison.

One output directory holds one run (one or more regimes):
- ``results.json``: platform, config, versions, video catalogue, then per regime its load
  summary, statistics summary, threshold violations and *every* request record;
- ``requests.csv`` (one row per request) and ``invocations.csv`` (one row per function call);
- ``latency_cdf.png``, ``function_breakdown.png``, ``memory.png``, ``throughput.png``.
"""

from __future__ import annotations

import csv
import functools
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend
from pydantic import BaseModel, ConfigDict, Field, computed_field

from harness.functions import load as load_functions
from harness.records import RequestRecord
from harness.regimes import Baseline, Violation
from harness.stats import RegimeSummary, ResourceUse
from harness.workload import LoadSummary

SCHEMA = "vsearch-bench/1"
RESULTS = "results.json"
MIB = float(1 << 20)


class BurstFloor(BaseModel):
    """The earliest a burst's median request can finish, given the CPU the run measured."""

    floor_s: float
    #: The median's place among the burst's requests (2 of 3): no schedule finishes it before
    #: that many requests' work is done, and oldest-first service does no more than that.
    requests: int
    cpu_s_per_request: float
    cores: float


class RegimeResult(BaseModel):
    name: str
    summary: RegimeSummary
    load: LoadSummary | None = None
    violations: list[Violation] = Field(default_factory=list)
    records: list[RequestRecord] = Field(default_factory=list)
    preparation: dict[str, Any] | None = Field(None, description="what was prepared, verified")
    resources: ResourceUse | None = Field(None, description="CPU used and the limit it implies")
    baseline: Baseline | None = Field(
        None, description="the warm request of the same run that ratio thresholds refer to"
    )

    @property
    def passed(self) -> bool:
        return not self.violations

    @computed_field  # type: ignore[prop-decorator]
    @property
    def burst_floor(self) -> BurstFloor | None:
        """A burst's median against its CPU floor, in results.json too (see burst_cpu_floor)."""
        return burst_cpu_floor(self)


class RunResults(BaseModel):
    schema_: str = Field(SCHEMA, alias="schema")
    created_at: float = Field(default_factory=time.time)
    platform: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, Any] = Field(default_factory=dict)
    videos: list[dict[str, Any]] = Field(default_factory=list)
    regimes: list[RegimeResult] = Field(default_factory=list)

    model_config = ConfigDict(populate_by_name=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

INVOCATION_COLUMNS = (
    "regime",
    "request_index",
    "request_id",
    "phase",
    "function",
    "step",
    "attempt",
    "fanout",
    "status_code",
    "outcome",
    "error_code",
    "reused",
    "wall_s",
    "latency_s",
    "function_duration_s",
    "queue_s",
    "cold_start_wait_s",
    "cold_start",
    "process_init_s",
    "cpu_s",
    "peak_rss_bytes",
    "children_peak_rss_bytes",
    "memory_limit_bytes",
    "replica",
    "started_at",
)

REQUEST_COLUMNS = (
    "regime",
    "index",
    "request_id",
    "video",
    "phase",
    "outcome",
    "http_status",
    "scheduled_s",
    "sent_s",
    "send_lag_s",
    "finished_s",
    "latency_s",
    "client_retries",
    "invocations",
    "error_code",
    "failed_checks",
)


def write_report(
    out_dir: Path | str,
    regimes: Sequence[RegimeResult],
    *,
    platform: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    videos: Iterable[Any] | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write every output file; returns them by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if versions is None:
        # What the platform ran on (Kubernetes/OpenFaaS/MinIO, or the embedded parts), as the
        # backend's describe() measured it.
        versions = (platform or {}).get("versions") or {}
    run = RunResults(
        platform=_jsonable(dict(platform or {})),
        config=_jsonable(dict(config or {})),
        versions=_jsonable(dict(versions or {})),
        videos=[_jsonable(v) for v in videos or []],
        regimes=list(regimes),
    )
    files: dict[str, Path] = {}
    files["results"] = out / RESULTS
    text = json.dumps(_jsonable(run.model_dump(mode="json", by_alias=True)), indent=1)
    files["results"].write_text(text + "\n")
    files["invocations"] = write_invocations_csv(out / "invocations.csv", regimes)
    files["requests"] = write_requests_csv(out / "requests.csv", regimes)
    if plots:
        files.update(write_plots(out, regimes))
        from harness.trace import write_trace

        for regime in regimes:
            files.update(write_trace(out, regime.name, regime.records))
    return files


def write_invocations_csv(path: Path, regimes: Sequence[RegimeResult]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(INVOCATION_COLUMNS)
        for regime in regimes:
            for r in regime.records:
                for s in r.invocations:
                    row = {
                        "regime": regime.name,
                        "request_index": r.index,
                        "request_id": r.request_id,
                        "phase": r.phase,
                        **s.model_dump(),
                    }
                    writer.writerow(_cell(row.get(c)) for c in INVOCATION_COLUMNS)
    return path


def write_requests_csv(path: Path, regimes: Sequence[RegimeResult]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(REQUEST_COLUMNS)
        for regime in regimes:
            for r in regime.records:
                row = {
                    "regime": regime.name,
                    **r.model_dump(exclude={"checks", "invocations", "attempts"}),
                    "send_lag_s": r.send_lag_s,
                    "invocations": len(r.invocations),
                    "failed_checks": ";".join(c.name for c in r.failed_checks()),
                }
                writer.writerow(_cell(row.get(c)) for c in REQUEST_COLUMNS)
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        # Microseconds, not significant digits: `:.6g` wrote a Unix time (started_at) as
        # 1.79658e+09, 1000 s coarse, so no two invocations of a run could be ordered.
        return repr(round(value, 6))
    return value


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def write_plots(out: Path, regimes: Sequence[RegimeResult]) -> dict[str, Path]:
    makers = {
        "latency_cdf": plot_latency_cdf,
        "function_breakdown": plot_function_breakdown,
        "memory": plot_memory,
        "throughput": plot_throughput,
    }
    files: dict[str, Path] = {}
    for name, maker in makers.items():
        path = out / f"{name}.png"
        fig = maker(regimes)
        try:
            fig.savefig(path, dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)
        files[name] = path
    return files


def _measured(regime: RegimeResult) -> list[RequestRecord]:
    return [r for r in regime.records if r.phase != "warmup"]


def _empty(ax: Any, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


def plot_latency_cdf(regimes: Sequence[RegimeResult]) -> Any:
    """Empirical CDF of latency from the scheduled time; failures shown as their own curve."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for regime in regimes:
        ok = sorted(r.latency_s for r in _measured(regime) if r.ok and r.latency_s is not None)
        total = sum(1 for r in _measured(regime) if r.outcome != "not_sent")
        if ok and total:
            # Normalised by every sent request: a curve that stops below 1 shows the failures.
            ys = [(i + 1) / total for i in range(len(ok))]
            ax.step([0.0, *ok], [0.0, *ys], where="post", label=f"{regime.name} (n={len(ok)})")
            drawn = True
    if not drawn:
        _empty(ax, "no successful requests")
    ax.set_xlabel("latency from scheduled send (s)")
    ax.set_ylabel("fraction of sent requests answered correctly")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("Latency CDF per regime (successes; the rest of the way to 1 failed)")
    if drawn:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def _function_names(regimes: Sequence[RegimeResult]) -> list[str]:
    names: set[str] = set()
    for regime in regimes:
        names |= set(regime.summary.functions)
    # Pipeline order where known (manifests/functions.yaml declares it), the rest after.
    order = _pipeline_order()
    return [n for n in order if n in names] + sorted(names - set(order))


@functools.cache
def _pipeline_order() -> tuple[str, ...]:
    return tuple(load_functions().names)


def plot_function_breakdown(regimes: Sequence[RegimeResult]) -> Any:
    """Per regime, the mean per measured request of invocation-seconds in each function, then
    waiting for replica starts and in the gateway's queue. These are sums over invocations
    (fan-out steps run in parallel), labelled as such: a request's time line is its trace."""
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(regimes) + 3), 4.5))
    names = [n for n in _function_names(regimes) if n != "orchestrator"]
    labels = [r.name for r in regimes]
    bottoms = [0.0] * len(regimes)
    drawn = False
    cmap = plt.get_cmap("tab10")
    for k, fn in enumerate(names):
        heights = []
        for regime in regimes:
            fs = regime.summary.functions.get(fn)
            n = max(1, sum(1 for r in _measured(regime) if r.invocations))
            heights.append((fs.exec_s.total or 0.0) / n if fs else 0.0)
        if any(heights):
            ax.bar(labels, heights, bottom=bottoms, label=fn, color=cmap(k % 10))
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
            drawn = True
    # Waiting at the gateway, on top: the gateway's queue time includes a cold start's wait,
    # so the two are split to show what replica starts cost apart from busy replicas.
    cold_heights, queue_heights = [], []
    for regime in regimes:
        n = max(1, sum(1 for r in _measured(regime) if r.invocations))
        fss = [f for name, f in regime.summary.functions.items() if name != "orchestrator"]
        cold = sum(f.cold_start_wait_s.total or 0.0 for f in fss)
        queued = sum(f.queue_s.total or 0.0 for f in fss)
        cold_heights.append(cold / n)
        queue_heights.append(max(0.0, queued - cold) / n)
    for heights, label, hatch in (
        (cold_heights, "waiting for replica starts", "xx"),
        (queue_heights, "queued behind busy replicas", ".."),
    ):
        if any(h > 0.01 for h in heights):
            ax.bar(
                labels, heights, bottom=bottoms, label=label, color="white",
                edgecolor="gray", hatch=hatch,
            )  # fmt: skip
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
            drawn = True
    if not drawn:
        _empty(ax)
    # No latency line beside the stack: a sum over parallel invocations is not a duration a
    # request took, and drawing both on one axis invites reading it as one.
    ax.set_ylabel("invocation-seconds per request\n(mean; summed over invocations, NOT latency)")
    ax.set_title(
        "Work per request by function: each invocation's own wall time, summed\n"
        "(fan-out runs in parallel, so this exceeds latency; see trace_*.png for time)",
        fontsize=9,
    )
    if drawn:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_memory(regimes: Sequence[RegimeResult]) -> Any:
    """Peak memory per function (platform and measured RSS, max over regimes) vs its limit."""
    names = _function_names(regimes)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4.5))
    if not names:
        _empty(ax)
        return fig
    platform, measured, limits = [], [], []
    for fn in names:
        fss = [r.summary.functions[fn] for r in regimes if fn in r.summary.functions]
        platform.append(max((f.peak_memory_bytes_platform or 0) for f in fss) / MIB)
        measured.append(max((f.peak_rss_bytes_measured or 0) for f in fss) / MIB)
        limits.append(max((f.memory_limit_bytes or 0) for f in fss) / MIB)
    xs = range(len(names))
    width = 0.38
    ax.bar([x - width / 2 for x in xs], platform, width, label="peak (platform)")
    ax.bar([x + width / 2 for x in xs], measured, width, label="peak RSS + child (measured)")
    for x, limit in zip(xs, limits, strict=True):
        if limit:
            ax.hlines(limit, x - 0.45, x + 0.45, colors="red", lw=2)
    ax.plot([], [], color="red", lw=2, label="memory limit")
    ax.set_xticks(list(xs), names, rotation=30, ha="right")
    ax.set_ylabel("MiB")
    scope = " (max over regimes)" if len(regimes) > 1 else ""
    ax.set_title(f"Peak memory per function vs its limit{scope}")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def plot_throughput(regimes: Sequence[RegimeResult], bin_s: float | None = None) -> Any:
    """Completions over run time per regime; failures as red crosses at their finish time."""
    n = max(1, len(regimes))
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.4 * n + 0.6), squeeze=False)
    for ax, regime in zip(axes[:, 0], regimes or [None], strict=False):
        if regime is None:
            _empty(ax)
            continue
        recs = [r for r in regime.records if r.finished_s is not None]
        if not recs:
            _empty(ax)
            ax.set_title(regime.name)
            continue
        end = max(r.finished_s for r in recs if r.finished_s is not None)
        width = bin_s or max(1.0, math.ceil(end / 20))
        nbins = max(1, math.ceil(end / width))
        ok_counts = [0] * nbins
        for r in recs:
            if r.ok and r.finished_s is not None:
                ok_counts[min(nbins - 1, int(r.finished_s // width))] += 1
        ax.bar(
            [i * width for i in range(nbins)],
            [c / width for c in ok_counts],
            width=width,
            align="edge",
            alpha=0.7,
            label="successes / s",
        )
        fails = [r for r in recs if not r.ok]
        if fails:
            ax.scatter(
                [r.finished_s for r in fails],
                [0.0] * len(fails),
                marker="x",
                color="red",
                zorder=3,
                label=f"failed ({len(fails)})",
                clip_on=False,
            )
        sends = [r.sent_s for r in regime.records if r.sent_s is not None]
        if sends:
            ax.scatter(
                sends,
                [0.0] * len(sends),
                marker="|",
                color="gray",
                zorder=2,
                label="sent",
                clip_on=False,
            )
        ax.set_title(regime.name, fontsize=9)
        ax.set_ylabel("req/s")
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("run time (s)")
    fig.suptitle("Throughput over time")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, align: str | None = None
) -> str:
    """Plain aligned text; ``align`` is one char per column ('l' or 'r'; default: numbers right)."""
    cells = [[_text(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    if align is None:
        align = "".join(
            "r" if rows and all(_numeric(row[i]) for row in rows) else "l"
            for i in range(len(headers))
        )

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if a == "r" else v.ljust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def _numeric(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, int | float):
        return True
    text = str(value).strip().rstrip("%s")
    try:
        float(text)
    except ValueError:
        return text in ("", "-", "n/a")
    return True


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _gbs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mib(value: float | None) -> str:
    return "-" if not value else f"{value / MIB:.0f}"


def versions_line(versions: Mapping[str, Any]) -> str:
    """One line of the platform's versions for a report's header ("?" where not known)."""
    if "kubernetes" in versions:
        k8s = versions.get("kubernetes") or {}
        faas = versions.get("openfaas") or {}
        gateway = faas.get("gateway") or {}
        provider = faas.get("provider") or {}
        minio = versions.get("minio") or {}
        minio_image = str(minio.get("image_id") or minio.get("image") or "?")
        return (
            f"Kubernetes {k8s.get('gitVersion', '?')}, OpenFaaS gateway "
            f"{gateway.get('release', '?')} ({str(gateway.get('sha') or '?')[:12]}), provider "
            f"{provider.get('name', '?')} {provider.get('release', '?')}, MinIO {minio_image}"
        )
    if "s3_server" in versions:
        s3 = versions.get("s3_server") or {}
        gateway = versions.get("gateway") or {}
        return (
            f"embedded: Python {versions.get('python', '?')}, {s3.get('name', 'S3')} "
            f"{s3.get('version', '?')}, gateway on Starlette {gateway.get('starlette', '?')} / "
            f"uvicorn {gateway.get('uvicorn', '?')}"
        )
    return "platform versions not recorded"


def render_summary(regimes: Sequence[RegimeResult]) -> str:
    """The terminal view of a run: one line per regime, then per-function figures."""
    head = (
        "regime",
        "ok/total",
        "success",
        "admitted ok",
        "p50",
        "p95",
        "p99",
        "max",
        "mean ±95% CI",
        "GB-s/req meas",
        "GB-s/req conf",
        "idle GB-s",
        "OOM",
        "verdict",
    )
    rows = []
    for reg in regimes:
        s = reg.summary
        lat = s.latency_ok_s
        ci = (
            f"{lat.mean:.2f}±{(lat.ci95_high - lat.mean):.2f}s"
            if lat.mean is not None and lat.ci95_high is not None
            else _s(lat.mean)
        )
        rows.append(
            (
                reg.name,
                f"{s.outcomes.ok}/{s.outcomes.total}",
                _rate(s.success_rate),
                _rate(s.admitted_success_rate),
                _s(lat.p50),
                _s(lat.p95),
                _s(lat.p99),
                _s(lat.max),
                ci,
                _gbs(s.cost.per_ok_request_measured_gb_s),
                _gbs(s.cost.per_ok_request_configured_gb_s),
                _gbs(s.cost.idle_gb_s),
                s.oom_kills,
                "pass" if reg.passed else f"FAIL ({len(reg.violations)})",
            )
        )
    parts = [format_table(head, rows, align="lrrrrrrrrrrrrl")]
    for reg in regimes:
        if reg.load is not None:
            ld = reg.load
            parts.append(
                f"{reg.name}: issued {ld.issued}/{ld.scheduled}, target rate "
                f"{_fmt_rate(ld.target_rate)}, achieved "
                f"{_fmt_rate(ld.achieved_rate if ld.target_rate is not None else None)}, "
                f"max send lag {_s(ld.max_send_lag_s)}, client retries {ld.client_retries}"
            )
    parts.append("")
    parts.append(render_functions(regimes))
    if any(reg.resources is not None or reg.preparation for reg in regimes):
        parts.append("")
        parts.append(render_capacity(regimes))
    cold = render_cold_starts(regimes)
    if cold:
        parts.append("")
        parts += cold
    floors = render_burst_floors(regimes)
    if floors:
        parts.append("")
        parts += floors
    problems = [v.message for reg in regimes for v in reg.violations]
    if problems:
        parts.append("")
        parts.append("Threshold violations:")
        parts += [f"  - {p}" for p in problems]
    return "\n".join(parts)


def _fmt_rate(rate: float | None) -> str:
    return "burst" if rate is None else f"{rate:.3g}/s"


def render_functions(regimes: Sequence[RegimeResult]) -> str:
    head = (
        "regime",
        "function",
        "calls",
        "retries",
        "cold",
        "exec p50",
        "p95",
        "p99",
        "CPU s",
        "peak MiB",
        "limit MiB",
        "peak/limit",
        "OOM",
        "GB-s meas",
        "GB-s conf",
    )
    rows = []
    for reg in regimes:
        names = _function_names([reg])
        for fn in names:
            f = reg.summary.functions[fn]
            rows.append(
                (
                    reg.name,
                    fn,
                    f.invocations,
                    f.retries,
                    f.cold_starts,
                    _s(f.exec_s.p50),
                    _s(f.exec_s.p95),
                    _s(f.exec_s.p99),
                    f"{f.cpu_s_total:.1f}",
                    _mib(f.peak_memory_bytes),
                    _mib(f.memory_limit_bytes),
                    "-" if f.peak_over_limit is None else f"{f.peak_over_limit:.0%}",
                    f.oom_kills,
                    _gbs(f.gb_s_measured),
                    _gbs(f.gb_s_configured),
                )
            )
    return format_table(head, rows, align="llrrrrrrrrrrrrr")


def _span(counts: Mapping[str, Any] | None) -> str:
    """Replica counts over functions, compactly: "1" when all equal, else "min-max"."""
    values = [int(v) for v in (counts or {}).values() if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def render_capacity(regimes: Sequence[RegimeResult]) -> str:
    """Per regime: what preparation saw, and CPU use against the throughput it allows."""
    head = (
        "regime",
        "deploy",
        "ready before",
        "after",
        "window",
        "ok/s",
        "stage CPU/req",
        "replica CPU/req",
        "CPU-bound ok/s",
        "CPU util",
        "other CPU",
        "load avg",
    )
    rows = []
    for reg in regimes:
        prep = reg.preparation or {}
        res = reg.resources
        load = res.load_average_before[:1] + res.load_average_after[:1] if res else []
        rows.append(
            (
                reg.name,
                _s(prep.get("deploy_s")),
                _span(prep.get("ready_replicas_seen")),
                _span(prep.get("ready_replicas_after")),
                _s(res.window_s) if res else "-",
                "-"
                if res is None or res.throughput_ok_per_s is None
                else f"{res.throughput_ok_per_s:.3f}",
                _s(res.stage_cpu_s_per_ok_request.mean) if res else "-",
                _s(res.replica_cpu_s_per_ok_request) if res else "-",
                "-"
                if res is None or res.cpu_bound_limit_per_s is None
                else f"{res.cpu_bound_limit_per_s:.3f}",
                _rate(res.utilisation) if res else "-",
                _s(res.other_cpu_s) if res else "-",
                "->".join(f"{x:.1f}" for x in load) or "-",
            )
        )
    note = (
        "CPU-bound ok/s = cores / replica CPU-seconds per successful request; other CPU = host "
        "busy time not spent by the replicas or the harness (S3 server, anything else running)"
    )
    return format_table(head, rows, align="lrrrrrrrrrrr") + "\n" + note


def cold_counterpart(name: str, names: Iterable[str]) -> str | None:
    """The warm regime a cold one is measured against: cold-X -> warm-X."""
    if not name.startswith("cold-"):
        return None
    warm = "warm-" + name.removeprefix("cold-")
    return warm if warm in set(names) else None


def cold_start_penalty(cold: RegimeResult, warm: RegimeResult) -> float | None:
    """Median latency of the cold regime over that of its warm counterpart (same load)."""
    a, b = cold.summary.latency_ok_s.p50, warm.summary.latency_ok_s.p50
    return None if a is None or b is None else a - b


def cold_wait_per_request(regime: RegimeResult) -> float | None:
    """Mean over measured requests of the summed replica-start waits of their invocations:
    an upper bound of what cold starts added (waits of parallel steps overlap)."""
    per = [
        sum(s.cold_start_wait_s or 0.0 for s in r.invocations if not s.reused)
        for r in _measured(regime)
        if r.invocations
    ]
    return sum(per) / len(per) if per else None


def render_cold_starts(regimes: Sequence[RegimeResult]) -> list[str]:
    by_name = {r.name: r for r in regimes}
    lines = []
    for reg in regimes:
        fns = reg.summary.functions
        total = sum(f.cold_starts for f in fns.values())
        if not total:
            continue
        waits = [
            f"{name} {f.cold_start_wait_s.p50:.1f}/{f.cold_start_wait_s.max:.1f}s"
            for name in _function_names([reg])
            if (f := fns[name]).cold_start_wait_s.n
            and f.cold_start_wait_s.p50 is not None
            and f.cold_start_wait_s.max is not None
        ]
        calls = "call" if total == 1 else "calls"
        line = f"{reg.name}: {total} {calls} waited for a replica start"
        overhead = reg.summary.overhead_s.p50
        if overhead is not None:
            line += f", overhead (end-to-end - critical path) p50 {overhead:.1f}s"
        warm = cold_counterpart(reg.name, by_name)
        if warm is not None:
            penalty = cold_start_penalty(reg, by_name[warm])
            if penalty is not None:
                line += f"; p50 latency {penalty:+.2f}s vs {warm}"
        lines.append(line)
        if waits:
            lines.append("  waits p50/max: " + ", ".join(waits))
    return lines


def burst_cpu_floor(regime: RegimeResult) -> BurstFloor | None:
    """For a burst regime: `requests` requests' host-wide CPU (replicas, gateway, S3 server,
    anything else running) spread over every core, the median's lower bound. p50 near it
    means the time went to CPU, not to cold starts or scheduling."""
    res, load = regime.resources, regime.load
    if res is None or load is None or load.kind != "burst" or not res.cores:
        return None
    ok = res.ok_requests
    if ok is None:  # a results.json from before ok_requests was recorded
        ok = round((res.throughput_ok_per_s or 0.0) * res.window_s)
    if not ok or res.host_busy_cpu_s is None or load.issued < 1:
        return None
    per = res.host_busy_cpu_s / ok
    k = (load.issued + 1) // 2
    return BurstFloor(
        floor_s=k * per / res.cores, requests=k, cpu_s_per_request=per, cores=res.cores
    )


def render_burst_floors(regimes: Sequence[RegimeResult]) -> list[str]:
    steady = next((r for r in regimes if r.name == "warm-steady"), None)
    steady_p50 = steady.summary.latency_ok_s.p50 if steady is not None else None
    lines = []
    for reg in regimes:
        floor = burst_cpu_floor(reg)
        if floor is None:
            continue
        p50 = reg.summary.latency_ok_s.p50
        line = (
            f"{reg.name}: p50 {_s(p50)} against a CPU floor of {floor.floor_s:.2f}s "
            f"({floor.requests} requests x {floor.cpu_s_per_request:.2f} host CPU-s on "
            f"{floor.cores:g} cores: the median cannot finish sooner at this CPU per request)"
        )
        if steady_p50 and p50 is not None:
            line += (
                f"; over warm-steady p50: p50 {p50 / steady_p50:.2f}x, "
                f"floor {floor.floor_s / steady_p50:.2f}x"
            )
        lines.append(line)
    return lines


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


def load_results(path: Path | str) -> RunResults:
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS
    return RunResults.model_validate_json(p.read_text())


def compare(dirs: Sequence[Path | str]) -> str:
    """Runs side by side: one row per (run, regime), grouped by regime; then the cold-start
    penalty of each cold regime against its warm counterpart (same run first, else any)."""
    head = (
        "run",
        "regime",
        "ok/total",
        "success",
        "p50",
        "p95",
        "ok/s",
        "CPU-bound",
        "GB-s/req meas",
        "GB-s/req conf",
        "+idle",
        "cold",
        "max peak/limit",
        "OOM",
        "other CPU",
        "verdict",
    )
    rows = []
    runs: list[tuple[str, RegimeResult]] = []
    for d in dirs:
        run = load_results(d)
        label = Path(d).name or str(d)
        for reg in run.regimes:
            runs.append((label, reg))
            s = reg.summary
            res = reg.resources
            ratios = [f.peak_over_limit for f in s.functions.values() if f.peak_over_limit]
            rows.append(
                (
                    label,
                    reg.name,
                    f"{s.outcomes.ok}/{s.outcomes.total}",
                    _rate(s.success_rate),
                    _s(s.latency_ok_s.p50),
                    _s(s.latency_ok_s.p95),
                    _per_s(res.throughput_ok_per_s if res else None),
                    _per_s(res.cpu_bound_limit_per_s if res else None),
                    _gbs(s.cost.per_ok_request_measured_gb_s),
                    _gbs(s.cost.per_ok_request_configured_gb_s),
                    _gbs(s.cost.per_ok_request_with_idle_gb_s),
                    sum(f.cold_starts for f in s.functions.values()),
                    _rate(max(ratios)) if ratios else "-",
                    s.oom_kills,
                    _s(res.other_cpu_s) if res else "-",
                    "pass" if not reg.violations else f"FAIL ({len(reg.violations)})",
                )
            )
    rows.sort(key=lambda r: (r[1], r[0]))
    out = [format_table(head, rows, align="llrrrrrrrrrrrrrl")]
    for label, reg in runs:
        if not reg.name.startswith("cold-"):
            continue
        want = "warm-" + reg.name.removeprefix("cold-")
        same = [(lb, r) for lb, r in runs if r.name == want and lb == label]
        other = [(lb, r) for lb, r in runs if r.name == want and lb != label]
        for warm_label, warm in (same or other)[:1]:
            penalty = cold_start_penalty(reg, warm)
            if penalty is not None:
                out.append(
                    f"cold-start penalty {label}/{reg.name} vs {warm_label}/{want}: "
                    f"p50 latency {penalty:+.2f}s"
                )
    return "\n".join(out)


def _per_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}/s"


# --------------------------------------------------------------------------------------------
# Significance: is B worse than A?
# --------------------------------------------------------------------------------------------

#: A latency change must be significant at this level and at least this large to count.
ALPHA = 0.05
MIN_CHANGE = 0.10


class RegressionCheck(BaseModel):
    regime: str
    figure: str
    a: float | None = None
    b: float | None = None
    n_a: int = 0
    n_b: int = 0
    change: float | None = Field(None, description="b / a - 1")
    p_value: float | None = None
    test: str = ""
    regression: bool = False
    note: str = ""


def _latencies(reg: RegimeResult) -> list[float]:
    return sorted(r.latency_s for r in _measured(reg) if r.ok and r.latency_s is not None)


def significance(
    a: RunResults, b: RunResults, *, alpha: float = ALPHA, min_change: float = MIN_CHANGE
) -> list[RegressionCheck]:
    """Per regime in both runs: latency of B against A with a one-sided Mann-Whitney U test
    (B slower?), and success rate with a one-sided Fisher exact test (B fails more?), as
    ``pytest-benchmark compare`` judges benchmarks. A regression needs p < ``alpha`` and, for
    latency, a median at least ``min_change`` higher: a tiny shift on many samples is not one.
    """
    from scipy import stats as sps  # slow to import; only needed here

    out: list[RegressionCheck] = []
    bs = {r.name: r for r in b.regimes}
    for ra in a.regimes:
        rb = bs.get(ra.name)
        if rb is None:
            continue
        la, lb = _latencies(ra), _latencies(rb)
        check = RegressionCheck(regime=ra.name, figure="latency p50", n_a=len(la), n_b=len(lb))
        if la and lb:
            ma, mb = statistics_median(la), statistics_median(lb)
            check.a, check.b = ma, mb
            check.change = mb / ma - 1 if ma else None
            test = sps.mannwhitneyu(lb, la, alternative="greater", method="auto")
            check.p_value = float(test.pvalue)
            check.test = "Mann-Whitney U, one-sided"
            check.regression = check.p_value < alpha and (check.change or 0.0) >= min_change
            smallest = 1.0 / math.comb(len(la) + len(lb), len(lb))
            if smallest >= alpha:
                check.note = (
                    f"too few samples to show any difference (n={len(la)}+{len(lb)}: the "
                    f"smallest possible p is {smallest:.3f})"
                )
        else:
            check.note = "no successful requests in one run"
        out.append(check)
        sa, sb = ra.summary.outcomes, rb.summary.outcomes
        if sa.total and sb.total:
            table = [[sb.total - sb.ok, sb.ok], [sa.total - sa.ok, sa.ok]]
            p = float(sps.fisher_exact(table, alternative="greater")[1])
            out.append(
                RegressionCheck(
                    regime=ra.name,
                    figure="success rate",
                    a=sa.ok / sa.total,
                    b=sb.ok / sb.total,
                    n_a=sa.total,
                    n_b=sb.total,
                    change=(sb.ok / sb.total) - (sa.ok / sa.total),
                    p_value=p,
                    test="Fisher exact, one-sided",
                    regression=p < alpha,
                )
            )
    return out


def statistics_median(values: Sequence[float]) -> float:
    data = sorted(values)
    mid = len(data) // 2
    return data[mid] if len(data) % 2 else (data[mid - 1] + data[mid]) / 2


def render_significance(checks: Sequence[RegressionCheck], a: str, b: str) -> str:
    head = ("regime", "figure", f"A {a}", f"B {b}", "n A+B", "change", "p", "verdict")
    rows = []
    for c in checks:
        pct = c.figure == "success rate"
        fmt = _rate if pct else _s
        change = "-" if c.change is None else f"{c.change:+.0%}"
        verdict = "REGRESSION" if c.regression else "ok"
        if c.note and not c.regression:
            verdict = "ok (" + c.note + ")"
        rows.append(
            (
                c.regime,
                c.figure,
                fmt(c.a),
                fmt(c.b),
                f"{c.n_a}+{c.n_b}",
                change,
                "-" if c.p_value is None else f"{c.p_value:.3g}",
                verdict,
            )
        )
    note = (
        f"B against A: a regression is p < {ALPHA} (one-sided) and, for latency, a median "
        f"{MIN_CHANGE:.0%} or more higher"
    )
    return format_table(head, rows, align="llrrrrrl") + "\n" + note
