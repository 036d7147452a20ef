"""Deployment regimes (regimes.yaml) as validated models, and the check of a run against them.

A regime is data: how to prepare the platform (ready replicas per function, declaration
overrides such as scale-to-zero idle), what open-loop workload to offer, and thresholds the
summary must meet. :func:`evaluate` turns every unmet threshold into a :class:`Violation` whose
message names the regime, the function, the figure and the limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.functions import FunctionDeclaration, parse_bytes
from harness.stats import RegimeSummary
from harness.workload import Schedule, make_schedule

REGIMES_FILE = Path(__file__).resolve().with_name("regimes.yaml")
Size = Literal["small", "medium", "large"]
SIZES: tuple[Size, ...] = ("small", "medium", "large")
ANY = "*"

_DECLARATION_FIELDS = set(FunctionDeclaration.model_fields) - {"name", "module"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Preparation(_Strict):
    #: Ready replicas per function before the first request ("*" = every function).
    replicas: dict[str, int] = Field(default_factory=dict)
    verify: Literal["ready", "zero", "none"] = "ready"
    #: Overrides of the functions' declarations ("*" = all) for this regime.
    declarations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    settle_s: float = Field(0.0, ge=0)
    #: Longest the preparation may wait for replicas to reach the wanted state.
    timeout_s: float = Field(180.0, gt=0)

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: dict[str, int]) -> dict[str, int]:
        if any(n < 0 for n in value.values()):
            raise ValueError("replica counts must be >= 0")
        return value

    @field_validator("declarations")
    @classmethod
    def _declarations(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for fn, overrides in value.items():
            unknown = set(overrides) - _DECLARATION_FIELDS
            if unknown:
                raise ValueError(
                    f"declarations.{fn}: unknown fields {sorted(unknown)}; "
                    f"allowed: {sorted(_DECLARATION_FIELDS)}"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Preparation:
        if self.verify == "zero" and any(n > 0 for n in self.replicas.values()):
            raise ValueError("verify: zero with replicas > 0")
        if self.verify == "ready" and self.replicas and min(self.replicas.values()) < 1:
            raise ValueError("verify: ready needs >= 1 replica for every function listed")
        return self

    def replicas_for(self, function: str, default: int | None = None) -> int | None:
        return self.replicas.get(function, self.replicas.get(ANY, default))

    def overrides_for(self, function: str) -> dict[str, Any]:
        return {**self.declarations.get(ANY, {}), **self.declarations.get(function, {})}

    def apply(self, declarations: Iterable[FunctionDeclaration]) -> list[FunctionDeclaration]:
        """The declarations with this regime's overrides (validated again)."""
        out = []
        for decl in declarations:
            data = {**decl.model_dump(), **self.overrides_for(decl.name)}
            out.append(FunctionDeclaration.model_validate(data))
        return out


WorkloadKind = Literal["steady", "poisson", "burst", "ramp", "trace"]


class Workload(_Strict):
    kind: WorkloadKind
    rate: float | None = Field(None, gt=0)
    count: int | None = Field(None, ge=1)
    duration_s: float | None = Field(None, gt=0)
    start_rate: float | None = Field(None, ge=0)
    end_rate: float | None = Field(None, ge=0)
    seed: int = 0
    trace: str | None = None
    warmup: int = Field(0, ge=0)
    max_in_flight: int | None = Field(None, ge=1, description="client cap (None: none)")
    request_timeout_s: float | None = Field(None, gt=0)
    drain_timeout_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _shape(self) -> Workload:
        k = self.kind
        if k in ("steady", "poisson"):
            if self.rate is None:
                raise ValueError(f"{k}: rate is required")
            if (self.count is None) == (self.duration_s is None):
                raise ValueError(f"{k}: give exactly one of count or duration_s")
        elif k == "burst":
            if self.count is None:
                raise ValueError("burst: count is required")
        elif k == "ramp":
            if self.start_rate is None or self.end_rate is None or self.duration_s is None:
                raise ValueError("ramp: start_rate, end_rate and duration_s are required")
        elif k == "trace" and not self.trace:
            raise ValueError("trace: a trace file is required")
        return self

    def schedule(self, base_dir: Path | None = None) -> Schedule:
        if self.kind == "burst":
            return make_schedule("burst", n=self.count)
        if self.kind == "trace":
            assert self.trace is not None
            path = Path(self.trace)
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            return make_schedule("trace", path=path)
        return make_schedule(
            self.kind,
            rate=self.rate,
            count=self.count,
            duration=self.duration_s,
            seed=self.seed,
            start_rate=self.start_rate,
            end_rate=self.end_rate,
        )

    def scaled(self, factor: float) -> Workload:
        update: dict[str, Any] = {}
        if self.count is not None:
            update["count"] = max(1, math.ceil(self.count * factor))
        if self.duration_s is not None:
            update["duration_s"] = self.duration_s * factor
        return self.model_copy(update=update)


MemoryLimit = int | str


class Thresholds(_Strict):
    min_success_rate: float | None = Field(None, ge=0, le=1)
    min_admitted_success_rate: float | None = Field(None, ge=0, le=1)
    max_p95_latency_s: float | None = Field(None, gt=0)
    #: Per function ("*" = every function): "limit", "90%" (of the limit), bytes, or "600Mi".
    max_peak_memory: dict[str, MemoryLimit] = Field(default_factory=dict)
    max_oom_kills: int | None = Field(0, ge=0)
    max_not_sent: int | None = Field(0, ge=0)
    max_send_lag_s: float | None = Field(None, gt=0)
    min_cold_starts_per_function: int | None = Field(None, ge=0)
    max_cold_starts: int | None = Field(None, ge=0)
    #: Fewer measured requests than this make the figures meaningless.
    min_requests: int = Field(1, ge=0)

    @field_validator("max_peak_memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, int | str):
            value = {ANY: value}
        for limit in (value or {}).values():
            _parse_memory_threshold(limit, 1)  # raises on nonsense
        return value


def _parse_memory_threshold(value: MemoryLimit, limit: int | None) -> int | None:
    """Bytes allowed; None when it depends on an unknown limit."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text == "limit":
        return limit
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if match:
        return None if limit is None else int(limit * float(match.group(1)) / 100)
    return parse_bytes(text)


class Regime(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")
    description: str = ""
    preparation: Preparation = Field(default_factory=Preparation)
    workload: Workload
    thresholds: Thresholds = Field(default_factory=Thresholds)
    #: Per-size workload overrides, e.g. {medium: {count: 12}}; else the global factor applies.
    sizes: dict[Size, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _idle_vs_gap(self) -> Regime:
        # A cold-steady regime only measures cold starts when functions idle out between
        # requests: the gap must exceed the scale-to-zero idle.
        idle = self.preparation.overrides_for(ANY).get("scale_to_zero_idle")
        if idle and self.workload.kind == "steady" and self.workload.rate:
            gap = 1.0 / self.workload.rate
            if gap <= float(idle):
                raise ValueError(
                    f"{self.name}: gap between requests {gap:g}s is not longer than "
                    f"scale_to_zero_idle {idle}s"
                )
        return self

    def for_size(self, size: Size, factor: float) -> Regime:
        if size in self.sizes:
            data = {**self.workload.model_dump(), **self.sizes[size]}
            workload = Workload.model_validate(data)
        else:
            workload = self.workload.scaled(factor)
        return self.model_copy(update={"workload": workload})

    def schedule(self, base_dir: Path | None = None) -> Schedule:
        return self.workload.schedule(base_dir)


class RegimeSet(_Strict):
    version: int = 1
    sizes: dict[Size, float] = Field(default_factory=lambda: {"small": 1, "medium": 3, "large": 10})
    regimes: list[Regime]

    @model_validator(mode="after")
    def _unique(self) -> RegimeSet:
        names = [r.name for r in self.regimes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate regimes: {dupes}")
        return self

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.regimes]

    def get(self, name: str) -> Regime:
        for r in self.regimes:
            if r.name == name:
                return r
        raise KeyError(f"no regime {name!r}; known: {self.names}")

    def resolve(self, size: Size = "small", names: Sequence[str] | None = None) -> list[Regime]:
        """The regimes (all, or those named, in that order) sized for ``size``."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}")
        factor = float(self.sizes.get(size, 1.0))
        chosen = [self.get(n) for n in names] if names else list(self.regimes)
        return [r.for_size(size, factor) for r in chosen]


def load_regimes(path: Path | str = REGIMES_FILE) -> RegimeSet:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return RegimeSet.model_validate(raw)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


class Violation(BaseModel):
    regime: str
    figure: str
    function: str | None = None
    value: float | None = None
    limit: float | None = None
    message: str

    def __str__(self) -> str:
        return self.message


def _mib(n: float | None) -> str:
    return "?" if n is None else f"{n / (1 << 20):.0f} MiB"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def evaluate(
    summary: RegimeSummary,
    thresholds: Thresholds,
    *,
    functions: Sequence[str] | None = None,
) -> list[Violation]:
    """Every threshold the summary misses. ``functions`` limits the per-function checks
    (default: every function the summary knows)."""
    out: list[Violation] = []
    name = summary.regime
    oc = summary.outcomes

    def add(figure: str, message: str, *, function: str | None = None, **kw: Any) -> None:
        where = f"{name}: {function}: " if function else f"{name}: "
        out.append(
            Violation(regime=name, figure=figure, function=function, message=where + message, **kw)
        )

    counts = (
        f"{oc.ok} ok, {oc.failed_content} wrong content, {oc.error} errors, "
        f"{oc.refused} refused, {oc.timeout} timeouts, {oc.not_sent} not sent of {oc.total}"
    )
    if oc.total < thresholds.min_requests:
        add(
            "requests",
            f"{oc.total} measured requests < minimum {thresholds.min_requests}",
            value=oc.total,
            limit=thresholds.min_requests,
        )
    if thresholds.min_success_rate is not None:
        rate = summary.success_rate
        if rate is None or rate < thresholds.min_success_rate:
            add(
                "success rate",
                f"success rate {_pct(rate)} < minimum {_pct(thresholds.min_success_rate)} "
                f"({counts})",
                value=rate,
                limit=thresholds.min_success_rate,
            )
    if thresholds.min_admitted_success_rate is not None:
        rate = summary.admitted_success_rate
        if rate is None or rate < thresholds.min_admitted_success_rate:
            add(
                "admitted success rate",
                f"admitted success rate {_pct(rate)} < minimum "
                f"{_pct(thresholds.min_admitted_success_rate)} ({counts})",
                value=rate,
                limit=thresholds.min_admitted_success_rate,
            )
    if thresholds.max_p95_latency_s is not None:
        p95 = summary.latency_ok_s.p95
        if p95 is None:
            add(
                "p95 latency",
                f"p95 latency unknown (no successful request), limit "
                f"{thresholds.max_p95_latency_s:g}s",
                limit=thresholds.max_p95_latency_s,
            )
        elif p95 > thresholds.max_p95_latency_s:
            add(
                "p95 latency",
                f"p95 latency {p95:.2f}s > maximum {thresholds.max_p95_latency_s:g}s "
                f"(n={summary.latency_ok_s.n}, from scheduled send time)",
                value=p95,
                limit=thresholds.max_p95_latency_s,
            )
    if thresholds.max_not_sent is not None and oc.not_sent > thresholds.max_not_sent:
        add(
            "not sent",
            f"{oc.not_sent} requests not sent (client cap) > maximum {thresholds.max_not_sent}",
            value=oc.not_sent,
            limit=thresholds.max_not_sent,
        )
    if thresholds.max_send_lag_s is not None and summary.send_lag_s.max is not None:
        lag = summary.send_lag_s.max
        if lag > thresholds.max_send_lag_s:
            add(
                "send lag",
                f"load generator sent up to {lag:.3f}s after schedule > maximum "
                f"{thresholds.max_send_lag_s:g}s (the offered load was not what was asked)",
                value=lag,
                limit=thresholds.max_send_lag_s,
            )

    fns = summary.functions
    names = list(functions) if functions is not None else sorted(fns)
    total_oom = 0
    total_cold = 0
    for fn in names:
        fs = fns.get(fn)
        if fs is None:
            if functions is not None:
                add("invocations", "no figures for this function (never invoked?)", function=fn)
            continue
        total_oom += fs.oom_kills
        total_cold += fs.cold_starts
        if thresholds.max_oom_kills is not None and fs.oom_kills > thresholds.max_oom_kills:
            add(
                "OOM kills",
                f"{fs.oom_kills} OOM kills > maximum {thresholds.max_oom_kills} "
                f"(limit {_mib(fs.memory_limit_bytes)})",
                function=fn,
                value=fs.oom_kills,
                limit=thresholds.max_oom_kills,
            )
        rule = thresholds.max_peak_memory.get(fn, thresholds.max_peak_memory.get(ANY))
        if rule is not None:
            allowed = _parse_memory_threshold(rule, fs.memory_limit_bytes)
            peak = fs.peak_memory_bytes
            source = (
                "platform"
                if fs.peak_memory_bytes_platform and peak == fs.peak_memory_bytes_platform
                else "measured RSS"
            )
            if allowed is None:
                add(
                    "peak memory",
                    f"peak memory {_mib(peak)} cannot be checked against {rule!r}: "
                    "memory limit unknown",
                    function=fn,
                    value=peak,
                )
            elif peak is None:
                if fs.invocations:
                    add(
                        "peak memory",
                        f"peak memory not reported (limit {_mib(allowed)})",
                        function=fn,
                        limit=allowed,
                    )
            elif peak > allowed:
                add(
                    "peak memory",
                    f"peak memory {_mib(peak)} ({source}) > maximum {_mib(allowed)} "
                    f"({rule}; limit {_mib(fs.memory_limit_bytes)})",
                    function=fn,
                    value=peak,
                    limit=allowed,
                )
        need = thresholds.min_cold_starts_per_function
        # Cold: a call waited for a replica start, or (the orchestrator prewarms the chain, so
        # later stages are often ready before their first call) ran as a new process's first.
        cold = max(fs.cold_starts, fs.first_in_process)
        if need is not None and fs.invocations and cold < need:
            add(
                "cold starts",
                f"{cold} cold starts < minimum {need} (the regime was not cold)",
                function=fn,
                value=cold,
                limit=need,
            )
    if thresholds.max_oom_kills is not None and summary.oom_kills > total_oom:
        # OOM kills of functions outside `functions` still count for the run.
        extra = summary.oom_kills - total_oom
        if extra > thresholds.max_oom_kills:
            add(
                "OOM kills",
                f"{extra} OOM kills in other functions > maximum {thresholds.max_oom_kills}",
                value=extra,
                limit=thresholds.max_oom_kills,
            )
    if thresholds.max_cold_starts is not None and total_cold > thresholds.max_cold_starts:
        add(
            "cold starts",
            f"{total_cold} cold starts > maximum {thresholds.max_cold_starts} "
            "(the regime was not warm)",
            value=total_cold,
            limit=thresholds.max_cold_starts,
        )
    return out


def evaluate_all(
    summaries: Mapping[str, RegimeSummary], regimes: Iterable[Regime]
) -> dict[str, list[Violation]]:
    return {
        r.name: evaluate(summaries[r.name], r.thresholds) for r in regimes if r.name in summaries
    }
