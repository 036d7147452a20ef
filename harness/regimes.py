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
from harness.stats import FunctionSummary, RegimeSummary, ResourceUse, min_samples_for
from harness.workload import Schedule, make_schedule

REGIMES_FILE = Path(__file__).resolve().with_name("regimes.yaml")
Size = Literal["ci", "small", "medium", "large"]
#: ci: what `./vsearch test` runs (short; gates on what a few samples support: median, max);
#: small: `./vsearch bench`'s default (enough warm-steady requests for a p95).
SIZES: tuple[Size, ...] = ("ci", "small", "medium", "large")
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
    #: Offered rate as a multiple of the capacity measured in the same run (the baseline's
    #: CPU-bound cap); resolved into ``rate`` by :meth:`with_capacity` before the load.
    rate_x_capacity: float | None = Field(None, gt=0)
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
        if self.rate_x_capacity is not None and k not in ("steady", "poisson"):
            raise ValueError(f"{k}: rate_x_capacity only applies to steady and poisson")
        if k in ("steady", "poisson"):
            if self.rate is None and self.rate_x_capacity is None:
                raise ValueError(f"{k}: rate (or rate_x_capacity) is required")
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

    def with_capacity(self, capacity_per_s: float | None) -> Workload:
        """``rate`` = ``rate_x_capacity`` x the measured capacity (unchanged without a factor)."""
        if self.rate_x_capacity is None:
            return self
        if not capacity_per_s:
            raise ValueError("rate_x_capacity needs a measured capacity (the baseline's)")
        return self.model_copy(update={"rate": self.rate_x_capacity * capacity_per_s})

    def schedule(self, base_dir: Path | None = None) -> Schedule:
        if self.kind in ("steady", "poisson") and self.rate is None:
            raise ValueError("rate_x_capacity is not resolved yet: call with_capacity()")
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


LATENCY_STATS: tuple[str, ...] = ("p50", "p95", "max")


class Thresholds(_Strict):
    min_success_rate: float | None = Field(None, ge=0, le=1)
    min_admitted_success_rate: float | None = Field(None, ge=0, le=1)
    #: Admitted (neither refused with 429 nor unsent) / all measured requests.
    min_admitted_fraction: float | None = Field(None, ge=0, le=1)
    #: Successful requests per second over the load window / the capacity measured in the same
    #: run (the baseline request's CPU-bound cap: cores / its CPU-seconds).
    min_goodput_share: float | None = Field(None, gt=0)
    #: Absolute latency limits (seconds from the scheduled send time, successes only).
    max_p50_latency_s: float | None = Field(None, gt=0)
    max_p95_latency_s: float | None = Field(None, gt=0)
    max_max_latency_s: float | None = Field(None, gt=0)
    #: Latency over the warm baseline measured at the start of the same run (same video,
    #: same platform): the form that holds on any machine.
    max_p50_ratio: float | None = Field(None, gt=0)
    max_p95_ratio: float | None = Field(None, gt=0)
    max_max_ratio: float | None = Field(None, gt=0)
    #: Per function ("*" = every function): "limit", "90%" (of the limit), bytes, "600Mi", or
    #: "budget" (the regime set's measured ``budgets``).
    max_peak_memory: dict[str, MemoryLimit] = Field(default_factory=dict)
    max_oom_kills: int | None = Field(0, ge=0)
    max_not_sent: int | None = Field(0, ge=0)
    max_send_lag_s: float | None = Field(None, gt=0)
    min_cold_starts_per_function: int | None = Field(None, ge=0)
    max_cold_starts: int | None = Field(None, ge=0)
    #: Fewer measured requests than this make the figures meaningless.
    min_requests: int = Field(1, ge=0)
    #: Where each number came from, by threshold name (checked: only thresholds set here).
    sources: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sources_known(self) -> Thresholds:
        unknown = set(self.sources) - (set(type(self).model_fields) - {"sources"})
        if unknown:
            raise ValueError(f"sources for unknown thresholds: {sorted(unknown)}")
        return self

    def set_fields(self) -> list[str]:
        """The thresholds this regime actually sets (not None, not empty)."""
        return [
            name
            for name in type(self).model_fields
            if name not in ("sources", "min_requests") and getattr(self, name) not in (None, {}, [])
        ]

    @field_validator("max_peak_memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if isinstance(value, int | str):
            value = {ANY: value}
        for limit in (value or {}).values():
            if not (isinstance(limit, str) and limit.strip() == "budget"):
                _parse_memory_threshold(limit, 1)  # raises on nonsense
        return value


def _parse_memory_threshold(value: MemoryLimit, limit: int | None) -> int | None:
    """Bytes allowed; None when it depends on an unknown limit."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text == "limit":
        return limit
    if text == "budget":
        raise ValueError("'budget' without a budget for this function in the regime set")
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
    #: A ``thresholds`` key in it replaces those thresholds for that size.
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
        thresholds = self.thresholds
        if size in self.sizes:
            override = dict(self.sizes[size])
            extra = override.pop("thresholds", None)
            data = {**self.workload.model_dump(), **override}
            workload = Workload.model_validate(data)
            if extra:
                merged = {**self.thresholds.model_dump(exclude_unset=False), **extra}
                merged["sources"] = {**self.thresholds.sources, **extra.get("sources", {})}
                thresholds = Thresholds.model_validate(merged)
        else:
            workload = self.workload.scaled(factor)
        return self.model_copy(update={"workload": workload, "thresholds": thresholds})

    def schedule(self, base_dir: Path | None = None) -> Schedule:
        return self.workload.schedule(base_dir)


class CapacityConfig(_Strict):
    """regimes.yaml ``capacity:`` (`./vsearch bench capacity`, harness/capacity.py)."""

    preparation: Preparation = Field(default_factory=Preparation)
    #: First step, as a multiple of the CPU-bound cap; each sustainable step adds ``step_x``.
    start_x: float = Field(0.5, gt=0)
    step_x: float = Field(0.25, gt=0)
    max_steps: int = Field(6, ge=1)
    requests_per_step: int = Field(6, ge=2)
    request_timeout_s: float = Field(300, gt=0)
    min_success_rate: float = Field(1.0, ge=0, le=1)
    max_latency_ratio: float = Field(3.0, gt=1)
    #: Answers between the step's first and last must come at least this share of the offered
    #: rate: below it a queue is building even if a short step's latency still looks fine.
    min_completion_ratio: float = Field(0.8, gt=0, le=1)
    sources: dict[str, str] = Field(default_factory=dict)


class RegimeSet(_Strict):
    version: int = 1
    sizes: dict[Size, float] = Field(
        default_factory=lambda: {"ci": 1, "small": 1, "medium": 3, "large": 10}
    )
    #: Per-function memory budgets (below the limits, from measurement), which a regime's
    #: ``max_peak_memory: {"*": budget}`` refers to; ``budgets_source`` says how they were made.
    budgets: dict[str, MemoryLimit] = Field(default_factory=dict)
    budgets_source: str | None = None
    #: The warm request measured at the start of every run, that latency ratios refer to.
    baseline: Regime | None = None
    capacity: CapacityConfig | None = None
    regimes: list[Regime]

    @model_validator(mode="after")
    def _unique(self) -> RegimeSet:
        names = [r.name for r in self.regimes]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate regimes: {dupes}")
        if self.budgets and not self.budgets_source:
            raise ValueError("budgets need budgets_source (command, date, machine)")
        for fn, value in self.budgets.items():
            if isinstance(value, str) and value.strip() in ("limit", "budget"):
                raise ValueError(f"budgets.{fn}: a quantity is needed, not {value!r}")
            _parse_memory_threshold(value, 1)
        self.regimes = [self._with_budgets(r) for r in self.regimes]
        return self

    def _with_budgets(self, regime: Regime) -> Regime:
        """``budget`` in max_peak_memory replaced by the numbers (every size's thresholds)."""

        def expand(rules: dict[str, MemoryLimit]) -> dict[str, MemoryLimit]:
            if not any(isinstance(v, str) and v.strip() == "budget" for v in rules.values()):
                return rules
            out: dict[str, MemoryLimit] = {}
            for fn, rule in rules.items():
                if not (isinstance(rule, str) and rule.strip() == "budget"):
                    out[fn] = rule
                elif fn == ANY:
                    for name, budget in self.budgets.items():
                        out.setdefault(name, budget)
                    out.setdefault(ANY, "limit")  # functions without a budget: their limit
                elif fn in self.budgets:
                    out[fn] = self.budgets[fn]
                else:
                    raise ValueError(f"{regime.name}: no budget for {fn}")
            return out

        thresholds = regime.thresholds.model_copy(
            update={"max_peak_memory": expand(regime.thresholds.max_peak_memory)}
        )
        sizes = {}
        for size, override in regime.sizes.items():
            extra = override.get("thresholds")
            if extra and "max_peak_memory" in extra:
                rules = extra["max_peak_memory"]
                rules = {ANY: rules} if isinstance(rules, int | str) else rules
                extra = {**extra, "max_peak_memory": expand(dict(rules))}
                override = {**override, "thresholds": extra}
            sizes[size] = override
        return regime.model_copy(update={"thresholds": thresholds, "sizes": sizes})

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

    def baseline_for(self, size: Size = "small") -> Regime | None:
        return None if self.baseline is None else self.baseline.for_size(size, 1.0)


def load_regimes(path: Path | str = REGIMES_FILE) -> RegimeSet:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return RegimeSet.model_validate(raw)


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


class Baseline(BaseModel):
    """The warm request measured at the start of a run: what latency ratios and capacity shares
    are relative to (same video, same platform, same machine load)."""

    latency_s: float = Field(gt=0, description="from the scheduled send, one warm request")
    cpu_s: float | None = Field(None, description="its stage invocations' own CPU-seconds")
    cores: float | None = None
    cores_source: str | None = Field(None, description="how the cores were found")
    n: int = 1
    source: str = "baseline request at the start of the run"

    @property
    def capacity_per_s(self) -> float | None:
        """The CPU-bound cap: cores / CPU-seconds per request."""
        return self.cores / self.cpu_s if self.cores and self.cpu_s else None


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


def _latency_gates(
    summary: RegimeSummary, thresholds: Thresholds, baseline: Baseline | None, add: Any
) -> None:
    """p50 / p95 / max latency, absolute and as a ratio to the baseline. A percentile gate on
    fewer samples than it needs fails ("not enough samples") instead of judging the maximum."""
    dist = summary.latency_ok_s
    for stat in LATENCY_STATS:
        absolute = getattr(thresholds, f"max_{stat}_latency_s")
        ratio = getattr(thresholds, f"max_{stat}_ratio")
        if absolute is None and ratio is None:
            continue
        if stat.startswith("p"):
            need = min_samples_for(float(stat[1:]))
            if dist.n < need:
                add(
                    f"{stat} latency",
                    f"{stat} latency: not enough samples (n={dist.n}, {stat} needs >= {need}); "
                    "gate on p50 or max, or run a larger size",
                    value=dist.n,
                    limit=need,
                )
                continue
        value = dist.stat(stat)
        if value is None:
            add(
                f"{stat} latency",
                f"{stat} latency unknown (no successful request)",
                limit=absolute if absolute is not None else ratio,
            )
            continue
        if absolute is not None and value > absolute:
            add(
                f"{stat} latency",
                f"{stat} latency {value:.2f}s > maximum {absolute:g}s "
                f"({dist.describe(stat)}, from scheduled send time)",
                value=value,
                limit=absolute,
            )
        if ratio is not None:
            if baseline is None:
                add(
                    f"{stat} latency ratio",
                    f"{stat} latency ratio cannot be judged: no baseline request was measured "
                    f"(limit {ratio:g}x)",
                    limit=ratio,
                )
                continue
            got = value / baseline.latency_s
            if got > ratio:
                add(
                    f"{stat} latency ratio",
                    f"{stat} latency {value:.2f}s = {got:.2f}x the warm baseline "
                    f"{baseline.latency_s:.2f}s > maximum {ratio:g}x ({dist.describe(stat)})",
                    value=got,
                    limit=ratio,
                )


def _goodput_gate(
    summary: RegimeSummary,
    share: float,
    baseline: Baseline | None,
    resources: ResourceUse | None,
    add: Any,
) -> None:
    goodput = summary.throughput_ok_per_s
    capacity, basis = None, ""
    if baseline is not None and baseline.capacity_per_s:
        capacity = baseline.capacity_per_s
        basis = f"baseline CPU-bound cap {baseline.cores:g} cores / {baseline.cpu_s:.2f} CPU-s"
    elif resources is not None and resources.cpu_bound_limit_per_s:
        capacity = resources.cpu_bound_limit_per_s
        basis = "this regime's CPU-bound cap (replica CPU per request)"
    if capacity is None or goodput is None:
        add(
            "goodput",
            f"goodput cannot be judged: goodput {goodput}, capacity unknown (no baseline CPU)",
            limit=share,
        )
        return
    got = goodput / capacity
    if got < share:
        add(
            "goodput",
            f"goodput {goodput:.3f} ok/s = {got:.0%} of capacity {capacity:.3f}/s < minimum "
            f"{share:.0%} ({basis})",
            value=got,
            limit=share,
        )


def _gated_peak(fs: FunctionSummary) -> tuple[int | None, str]:
    """The peak a memory budget is checked against, and where it comes from.

    A cgroup peak counts the page cache its processes first read (a Kubernetes pod pays for its
    image's shared libraries: ffmpeg's ~180 MiB in the first pod to run it), which the kernel
    reclaims before any OOM kill and which the embedded replicas never pay (the host read those
    files long before). Where the platform reports that cache, the budget is checked against the
    peak less it (the kubelet's working-set rule), never below the process tree's measured RSS.
    """
    platform, measured = fs.peak_memory_bytes_platform, fs.peak_rss_bytes_measured
    cache = fs.file_cache_bytes_platform
    if platform and cache:
        without = max(platform - cache, 0)
        if measured and measured >= without:
            return measured, f"measured RSS; platform {_mib(platform)} incl. {_mib(cache)} cache"
        return without, f"platform {_mib(platform)} less {_mib(cache)} page cache"
    peak = fs.peak_memory_bytes
    return peak, "platform" if platform and peak == platform else "measured RSS"


def evaluate(
    summary: RegimeSummary,
    thresholds: Thresholds,
    *,
    functions: Sequence[str] | None = None,
    baseline: Baseline | None = None,
    resources: ResourceUse | None = None,
) -> list[Violation]:
    """Every threshold the summary misses. ``functions`` limits the per-function checks
    (default: every function the summary knows). ``baseline``: the warm request of the same
    run that ratio thresholds refer to; ``resources``: the regime's CPU accounting (capacity
    for the goodput share when there is no baseline)."""
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
    _latency_gates(summary, thresholds, baseline, add)
    if thresholds.min_admitted_fraction is not None:
        frac = oc.admitted / oc.total if oc.total else None
        if frac is None or frac < thresholds.min_admitted_fraction:
            add(
                "admitted fraction",
                f"admitted fraction {_pct(frac)} < minimum "
                f"{_pct(thresholds.min_admitted_fraction)} ({oc.admitted} of {oc.total} "
                f"admitted; {oc.refused} refused with 429, {oc.not_sent} not sent)",
                value=frac,
                limit=thresholds.min_admitted_fraction,
            )
    if thresholds.min_goodput_share is not None:
        _goodput_gate(summary, thresholds.min_goodput_share, baseline, resources, add)
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
            peak, source = _gated_peak(fs)
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
    summaries: Mapping[str, RegimeSummary],
    regimes: Iterable[Regime],
    baseline: Baseline | None = None,
) -> dict[str, list[Violation]]:
    return {
        r.name: evaluate(summaries[r.name], r.thresholds, baseline=baseline)
        for r in regimes
        if r.name in summaries
    }
