"""Scenario TOML → frozen ``Scenario``; any bad field stops the run before the first request with
one line that names it (``arrivals.rates: must be > 0, got -2``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnbench.backends.engine import Engine
from nnbench.loadgen.arrivals import Constant, Gamma, Poisson
from nnbench.validate import SpecError, check_keys, choice, enum_value, file_name_part, load_toml, number, subtable
from nnbench.vocab import DTYPES, BackendName, Family, Methodology, Workload, is_device

PROCESSES = ("poisson", "constant", "gamma", "closed")
LOAD_BACKENDS = (BackendName.HF, BackendName.RAW_HOOKS, BackendName.VLLM_ASYNC, BackendName.VLLM_SERVE, BackendName.NULL)


@dataclass(frozen=True, slots=True)
class MixEntry:
    """One kind of request in the mix: a methodology on one prompt, with its parameters."""

    methodology: Methodology
    weight: float = 1.0
    workload: Workload = Workload.INTERACTIVE
    layer: int = 6
    alpha: float | None = None
    """steering norm; None: the family's calibrated norm (``cells.job.STEERING_NORM``)"""
    new_tokens: int = 4


@dataclass(frozen=True, slots=True)
class Arrivals:
    process: str = "poisson"
    rates: tuple[float, ...] = (1.0,)
    """open loop: one step per rate (requests/s)"""
    burstiness: float = 1.0
    """gamma only: shape k; < 1 is burstier than Poisson"""
    users: tuple[int, ...] = (1,)
    """closed loop: one step per user count"""
    think_time_s: float = 0.0
    """closed loop: pause between a user's response and its next request"""


@dataclass(frozen=True, slots=True)
class Stop:
    duration_s: float = 10.0
    """per step: no request is scheduled at or after this offset"""
    max_requests: int | None = None
    """per step, whichever comes first"""
    warmup_s: float = 0.0
    """requests intended before this offset are run but left out of the results"""
    drain_s: float = 30.0
    """after the last send, wait this long; requests still in flight are recorded as cut off"""


@dataclass(frozen=True, slots=True)
class Limits:
    max_in_flight: int = 64
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Slo:
    latency_ms: float = 1000.0
    """a response counts toward goodput if correct and within this latency"""
    min_goodput_fraction: float = 0.9
    """a step meets the SLO if this share of its responses is good: correct and within the latency (knee search)"""


@dataclass(frozen=True, slots=True)
class Knee:
    """Rate search (open loop): grow the rate until the SLO fails, then bisect."""

    enabled: bool = False
    start_rate: float = 1.0
    growth: float = 2.0
    max_rate: float = 1000.0
    refine_steps: int = 2


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    family: Family
    backends: tuple[BackendName, ...]
    mix: tuple[MixEntry, ...]
    seed: int = 0
    interventions: int = 8
    """distinct seeded interventions per mix entry; requests in flight together mostly differ"""
    check: bool = True
    """score every response with the oracle (off only for measuring the generator itself)"""
    max_send_lag_p99_ms: float = 1.0
    """the run is marked invalid if the generator's own dispatch lag p99 exceeds this"""
    arrivals: Arrivals = field(default_factory=Arrivals)
    stop: Stop = field(default_factory=Stop)
    limits: Limits = field(default_factory=Limits)
    slo: Slo = field(default_factory=Slo)
    knee: Knee = field(default_factory=Knee)
    engine: Engine = field(default_factory=Engine)

    @property
    def closed_loop(self) -> bool:
        return self.arrivals.process == "closed"

    def process(self, rate: float):
        """The arrival process of an open-loop step at ``rate``."""
        if self.arrivals.process == "constant":
            return Constant(rate)
        if self.arrivals.process == "gamma":
            return Gamma(rate, self.arrivals.burstiness)
        return Poisson(rate)

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


TOP_KEYS = ("name", "family", "backends", "seed", "interventions", "check", "max_send_lag_p99_ms",
            "mix", "arrivals", "stop", "limits", "slo", "knee", "engine")


def _positive_list(value: Any, field_name: str, integer: bool) -> tuple:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{field_name}: must be a non-empty list of numbers > 0")
    return tuple(number(v, field_name, integer=integer, above=0) for v in value)


def _mix(raw: Any) -> tuple[MixEntry, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("mix: must be a non-empty array of tables ([[mix]] with methodology = ...)")
    entries = []
    for i, item in enumerate(raw):
        where = f"mix[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: must be a table")
        check_keys(item, MixEntry.__dataclass_fields__, where)
        if "methodology" not in item:
            raise SpecError(f"{where}.methodology: required; allowed: {', '.join(m.value for m in Methodology)}")
        kw = {"methodology": enum_value(item["methodology"], Methodology, f"{where}.methodology")}
        if "workload" in item:
            kw["workload"] = Workload(choice(item["workload"], ("interactive", "generation"), f"{where}.workload"))
        if "weight" in item:
            kw["weight"] = float(number(item["weight"], f"{where}.weight", above=0))
        for name in ("layer", "new_tokens"):
            if name in item:
                kw[name] = number(item[name], f"{where}.{name}", integer=True, minimum=0 if name == "layer" else 1)
        if item.get("alpha") is not None:  # absent or None (a record's mix): the family's norm
            kw["alpha"] = float(number(item["alpha"], f"{where}.alpha"))
        entries.append(MixEntry(**kw))
    return tuple(entries)


def parse(raw: dict[str, Any]) -> Scenario:
    check_keys(raw, TOP_KEYS, "")
    for required in ("name", "family", "backends", "mix"):
        if required not in raw:
            raise SpecError(f"{required}: required")
    file_name_part(raw["name"], "name")
    backends = raw["backends"]
    if not isinstance(backends, list) or not backends:
        raise SpecError(f"backends: must be a non-empty list of {', '.join(LOAD_BACKENDS)}")
    kw: dict[str, Any] = {
        "name": raw["name"],
        "family": enum_value(raw["family"], Family, "family"),
        "backends": tuple(choice(b, LOAD_BACKENDS, "backends") for b in backends),
        "mix": _mix(raw["mix"]),
    }
    if "seed" in raw:
        kw["seed"] = number(raw["seed"], "seed", integer=True, minimum=0)
    if "interventions" in raw:
        kw["interventions"] = number(raw["interventions"], "interventions", integer=True, minimum=1)
    if "check" in raw:
        if not isinstance(raw["check"], bool):
            raise SpecError(f"check: must be true or false, got {raw['check']!r}")
        kw["check"] = raw["check"]
    if "max_send_lag_p99_ms" in raw:
        kw["max_send_lag_p99_ms"] = float(number(raw["max_send_lag_p99_ms"], "max_send_lag_p99_ms", above=0))
    kw["arrivals"] = _arrivals(subtable(raw, "arrivals"))
    kw["stop"] = _stop(subtable(raw, "stop"))
    kw["limits"] = _simple(Limits, subtable(raw, "limits"), "limits", ints=("max_in_flight",))
    kw["slo"] = _simple(Slo, subtable(raw, "slo"), "slo")
    kw["knee"] = _knee(subtable(raw, "knee"))
    kw["engine"] = parse_engine(subtable(raw, "engine"))
    if kw["knee"].enabled and kw["arrivals"].process == "closed":
        raise SpecError("knee.enabled: the rate search needs an open-loop process, not 'closed'")
    return Scenario(**kw)


def _arrivals(t: dict) -> Arrivals:
    check_keys(t, Arrivals.__dataclass_fields__, "arrivals")
    kw: dict[str, Any] = {}
    if "process" in t:
        kw["process"] = choice(t["process"], PROCESSES, "arrivals.process")
    if "rates" in t:
        kw["rates"] = tuple(float(r) for r in _positive_list(t["rates"], "arrivals.rates", integer=False))
    if "users" in t:
        kw["users"] = _positive_list(t["users"], "arrivals.users", integer=True)
    if "burstiness" in t:
        kw["burstiness"] = float(number(t["burstiness"], "arrivals.burstiness", above=0))
    if "think_time_s" in t:
        kw["think_time_s"] = float(number(t["think_time_s"], "arrivals.think_time_s", minimum=0))
    return Arrivals(**kw)


def _stop(t: dict) -> Stop:
    check_keys(t, Stop.__dataclass_fields__, "stop")
    kw: dict[str, Any] = {}
    if "duration_s" in t:
        kw["duration_s"] = float(number(t["duration_s"], "stop.duration_s", above=0))
    if "max_requests" in t:
        kw["max_requests"] = number(t["max_requests"], "stop.max_requests", integer=True, minimum=1)
    for name in ("warmup_s", "drain_s"):
        if name in t:
            kw[name] = float(number(t[name], f"stop.{name}", minimum=0))
    stop = Stop(**kw)
    if stop.warmup_s >= stop.duration_s:
        raise SpecError(f"stop.warmup_s: must be < stop.duration_s ({stop.duration_s}), got {stop.warmup_s}")
    return stop


FRACTIONS = ("min_goodput_fraction",)
"""fields that are shares of a whole: at most 1"""


def _simple(cls, t: dict, where: str, ints: tuple[str, ...] = ()) -> Any:
    check_keys(t, cls.__dataclass_fields__, where)
    return cls(**{k: number(v, f"{where}.{k}", integer=k in ints, above=0, maximum=1 if k in FRACTIONS else None)
                  for k, v in t.items()})


def _knee(t: dict) -> Knee:
    check_keys(t, Knee.__dataclass_fields__, "knee")
    kw: dict[str, Any] = {}
    if "enabled" in t:
        if not isinstance(t["enabled"], bool):
            raise SpecError(f"knee.enabled: must be true or false, got {t['enabled']!r}")
        kw["enabled"] = t["enabled"]
    for name in ("start_rate", "max_rate"):
        if name in t:
            kw[name] = float(number(t[name], f"knee.{name}", above=0))
    if "growth" in t:
        kw["growth"] = float(number(t["growth"], "knee.growth", above=1))
    if "refine_steps" in t:
        kw["refine_steps"] = number(t["refine_steps"], "knee.refine_steps", integer=True, minimum=0)
    return Knee(**kw)


def parse_engine(t: dict) -> Engine:
    check_keys(t, Engine.__dataclass_fields__, "engine")
    kw: dict[str, Any] = {}
    if "device" in t:
        if not is_device(t["device"]):
            raise SpecError(f"engine.device: must be 'cpu' or 'cuda[:N]', got {t['device']!r}")
        kw["device"] = t["device"]
    if "dtype" in t:
        kw["dtype"] = choice(t["dtype"], DTYPES, "engine.dtype")
    if "gpu_memory_utilization" in t:
        kw["gpu_memory_utilization"] = float(number(t["gpu_memory_utilization"], "engine.gpu_memory_utilization",
                                                    above=0, maximum=1))
    for name in ("max_model_len", "tensor_parallel_size"):
        if name in t:
            kw[name] = number(t[name], f"engine.{name}", integer=True, minimum=1)
    if "kv_cache_gib" in t:
        kw["kv_cache_gib"] = float(number(t["kv_cache_gib"], "engine.kv_cache_gib", above=0))
    for name in ("serve_url", "api_key"):
        if name in t:
            if not isinstance(t[name], str):
                raise SpecError(f"engine.{name}: must be a string")
            kw[name] = t[name]
    if "health_timeout_s" in t:
        kw["health_timeout_s"] = float(number(t["health_timeout_s"], "engine.health_timeout_s", above=0))
    if "serve_name_each_block" in t:
        if not isinstance(t["serve_name_each_block"], bool):
            raise SpecError(f"engine.serve_name_each_block: must be true or false, got {t['serve_name_each_block']!r}")
        kw["serve_name_each_block"] = t["serve_name_each_block"]
    if "null_latency_ms" in t:
        kw["null_latency_ms"] = float(number(t["null_latency_ms"], "engine.null_latency_ms", minimum=0))
    return Engine(**kw)


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors are prefixed with the file name."""
    raw = load_toml(path)
    try:
        return parse(raw)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
