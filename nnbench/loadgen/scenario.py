"""Scenario TOML → frozen ``Scenario``; any bad field stops the run before the first request with
one line that names it (``arrivals.rates: must be > 0, got -2``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nnbench.backends.engine import Engine
from nnbench.loadgen.arrivals import Constant, Gamma, Poisson
from nnbench.prompt_sets import pool
from nnbench.provision import ModelRule, with_model
from nnbench.validate import (
    Device,
    EnumOf,
    Flag,
    Maybe,
    Num,
    OneOf,
    Positives,
    Rule,
    SpecError,
    Text,
    check_keys,
    choice,
    enum_value,
    file_name_part,
    load_toml,
    read_table,
    subtable,
)
from nnbench.vocab import DTYPES, BackendName, Family, Methodology, Workload

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


ATTACKS = ("benign", "shared_script_path", "persistent_edit", "installed_edit", "noisy_neighbour", "failing_neighbour",
           "oversize", "capabilities")
"""what an adversarial tenant can try (``nnbench.loadgen.tenants``); never part of a default run.
``benign`` is the control: a well-behaved second tenant, which no detector may flag"""


@dataclass(frozen=True, slots=True)
class Tenants:
    """Opt-in: well-behaved canary tenants (the scenario's mix) beside one adversarial tenant per
    attack, each attack a row: the canaries on the same arrival trace with and without it."""

    attacks: tuple[str, ...]
    canary_rate: float = 4.0
    """canary requests per second (Poisson, the scenario's seed)"""
    duration_s: float = 3.0
    """each phase (without, then with the attacker)"""
    attacker_rate: float = 4.0
    """the attacker's requests per second, for attacks that keep sending"""
    noisy_ms: float = 50.0
    edit_scale: float = 0.5
    layer: int = 6
    latency_alarm: float = 2.0
    """an attack is detected by latency when the canaries' p99 grows by this factor ..."""
    latency_alarm_ms: float = 50.0
    """... and by at least this much: a p99 of 5 ms that doubles on a busy machine is not an attack
    (a benign tenant beside fast loopback echoes once read 2x, CI 2026-12-03)"""
    script_pairs: int = 4
    """shared script path: requests each of the two tenants sends, interleaved"""
    oversize_mb: float = 64.0
    """oversize request (vLLM): megabytes of ballast each attacker request carries"""


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
    prompts: int | None = None
    """the size of the templated prompt pool requests draw from; None: the built-in set"""
    model: str = ""
    """a built-in model's name or a local HF directory (``family`` may then be left out); empty:
    the family's default model"""
    tenants: Tenants | None = None
    """adversarial tenants (``[tenants]``); None: an ordinary load run"""

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


TOP_KEYS = ("name", "family", "model", "prompts", "backends", "seed", "interventions", "check", "max_send_lag_p99_ms",
            "mix", "arrivals", "stop", "limits", "slo", "knee", "engine", "tenants")


MIX: dict[str, Rule] = {
    "methodology": EnumOf(Methodology), "weight": Num(above=0), "workload": OneOf(("interactive", "generation")),
    "layer": Num(integer=True, minimum=0), "alpha": Maybe(Num()), "new_tokens": Num(integer=True, minimum=1)}
ARRIVALS: dict[str, Rule] = {
    "process": OneOf(PROCESSES), "rates": Positives(), "users": Positives(integer=True), "burstiness": Num(above=0),
    "think_time_s": Num(minimum=0)}
STOP: dict[str, Rule] = {
    "duration_s": Num(above=0), "max_requests": Num(integer=True, minimum=1), "warmup_s": Num(minimum=0),
    "drain_s": Num(minimum=0)}
LIMITS: dict[str, Rule] = {"max_in_flight": Num(integer=True, above=0), "timeout_s": Num(above=0)}
SLO: dict[str, Rule] = {"latency_ms": Num(above=0), "min_goodput_fraction": Num(above=0, maximum=1)}
KNEE: dict[str, Rule] = {
    "enabled": Flag(), "start_rate": Num(above=0), "max_rate": Num(above=0), "growth": Num(above=1),
    "refine_steps": Num(integer=True, minimum=0)}
ENGINE: dict[str, Rule] = {
    "device": Device(), "dtype": OneOf(DTYPES), "gpu_memory_utilization": Num(above=0, maximum=1),
    "max_model_len": Num(integer=True, minimum=1), "tensor_parallel_size": Num(integer=True, minimum=1),
    "kv_cache_gib": Num(above=0), "serve_url": Text(), "api_key": Text(), "health_timeout_s": Num(above=0),
    "serve_name_each_block": Flag(), "null_latency_ms": Num(minimum=0)}
TENANTS: dict[str, Rule] = {
    "canary_rate": Num(above=0), "duration_s": Num(above=0), "attacker_rate": Num(above=0), "noisy_ms": Num(minimum=0),
    "edit_scale": Num(), "layer": Num(integer=True, minimum=0), "latency_alarm": Num(above=1), "latency_alarm_ms": Num(minimum=0),
    "script_pairs": Num(integer=True, minimum=1), "oversize_mb": Num(above=0, maximum=4096)}
TENANT_BACKENDS = (BackendName.HF, BackendName.VLLM_ASYNC, BackendName.VLLM_SERVE)
TOP: dict[str, Rule] = {
    "seed": Num(integer=True, minimum=0), "interventions": Num(integer=True, minimum=1), "check": Flag(),
    "max_send_lag_p99_ms": Num(above=0), "model": ModelRule(), "prompts": Num(integer=True, minimum=1)}
"""the field table: every key of a scenario file and its rule (ranges, integers, finiteness)"""


def _mix(raw: Any) -> tuple[MixEntry, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("mix: must be a non-empty array of tables ([[mix]] with methodology = ...)")
    entries = []
    for i, item in enumerate(raw):
        where = f"mix[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{where}: must be a table")
        kw = read_table(item, where, MIX)
        if "methodology" not in kw:
            raise SpecError(f"{where}.methodology: required; allowed: {', '.join(m.value for m in Methodology)}")
        if "workload" in kw:
            kw["workload"] = Workload(kw["workload"])
        entries.append(MixEntry(**kw))
    return tuple(entries)


def parse(raw: dict[str, Any]) -> Scenario:
    check_keys(raw, TOP_KEYS, "")
    for required in ("name", "backends", "mix"):
        if required not in raw:
            raise SpecError(f"{required}: required")
    if "family" not in raw and not raw.get("model"):
        raise SpecError("family: required (or a model, whose architecture gives it)")
    file_name_part(raw["name"], "name")
    backends = raw["backends"]
    if not isinstance(backends, list) or not backends:
        raise SpecError(f"backends: must be a non-empty list of {', '.join(LOAD_BACKENDS)}")
    kw: dict[str, Any] = {
        "name": raw["name"],
        "family": enum_value(raw["family"], Family, "family") if "family" in raw else None,
        "backends": tuple(choice(b, LOAD_BACKENDS, "backends") for b in backends),
        "mix": _mix(raw["mix"]),
    }
    kw |= read_table({k: v for k, v in raw.items() if k in TOP}, "", TOP)
    if kw.get("model"):
        (kw["family"],) = with_model((kw["family"],) if kw["family"] else (), kw["model"], kw["family"] is not None, "")
    kw["arrivals"] = Arrivals(**read_table(subtable(raw, "arrivals"), "arrivals", ARRIVALS))
    kw["stop"] = _stop(read_table(subtable(raw, "stop"), "stop", STOP))
    kw["limits"] = Limits(**read_table(subtable(raw, "limits"), "limits", LIMITS))
    kw["slo"] = Slo(**read_table(subtable(raw, "slo"), "slo", SLO))
    kw["knee"] = Knee(**read_table(subtable(raw, "knee"), "knee", KNEE))
    kw["engine"] = parse_engine(subtable(raw, "engine"))
    if "tenants" in raw:
        kw["tenants"] = _tenants(subtable(raw, "tenants"), kw["backends"], kw["engine"])
    for entry in kw["mix"] if kw.get("prompts") else ():  # a pool too large for its templates, refused now
        pool(entry.methodology, entry.workload, kw["prompts"], kw["family"])
    if kw["knee"].enabled and kw["arrivals"].process == "closed":
        raise SpecError("knee.enabled: the rate search needs an open-loop process, not 'closed'")
    _servable(kw["arrivals"], kw["stop"], kw["knee"], kw.get("tenants"))
    return Scenario(**kw)


MAX_STEP_REQUESTS = 100_000
"""the most requests one step may plan: a step's schedule and its responses are held in memory, and
one core sends at most ~3,500 req/s (``benchmarks/generator.py``), so 100,000 is ~30 s at that
ceiling. ``rates = [1e9]`` planned 10^10 requests, grew to 24 GB and was OOM-killed"""
MAX_USERS = 4_096
"""closed loop: one coroutine per user"""


def _servable(arrivals: Arrivals, stop: Stop, knee: Knee, tenants: Tenants | None) -> None:
    """Refuse a step that cannot be generated, naming the fields: requests a step = rate x duration."""
    def check(rate: float, duration_s: float, where: str, cap: int | None = None) -> None:
        planned = rate * duration_s if cap is None else min(rate * duration_s, cap)
        if planned > MAX_STEP_REQUESTS:
            raise SpecError(f"{where}: {rate:g} req/s for {duration_s:g} s plans {planned:.3g} requests a step, "
                            f"more than the {MAX_STEP_REQUESTS:,} one step can hold (lower the rate or "
                            "stop.duration_s, or set stop.max_requests)")

    if arrivals.process == "closed":
        if max(arrivals.users) > MAX_USERS:
            raise SpecError(f"arrivals.users: {max(arrivals.users)} users, at most {MAX_USERS:,}")
    else:
        check(max(arrivals.rates), stop.duration_s, "arrivals.rates", stop.max_requests)
        if knee.enabled:
            check(knee.max_rate, stop.duration_s, "knee.max_rate", stop.max_requests)
    if tenants is not None:
        check(tenants.canary_rate, tenants.duration_s, "tenants.canary_rate")
        check(tenants.attacker_rate, tenants.duration_s, "tenants.attacker_rate")


def _tenants(t: dict[str, Any], backends: tuple[BackendName, ...], engine: Engine) -> Tenants:
    attacks = t.get("attacks")
    if not isinstance(attacks, list) or not attacks:
        raise SpecError(f"tenants.attacks: required, a non-empty list of {', '.join(ATTACKS)}")
    for backend in backends:
        choice(backend, TENANT_BACKENDS, "backends (with [tenants])")  # attacks run against a model the run owns
    host = urlsplit(engine.serve_url).hostname if engine.serve_url else None
    if host is not None and host not in ("127.0.0.1", "localhost", "::1"):
        raise SpecError(f"engine.serve_url: attacks only target a server on loopback, got host {host!r}")
    kw = read_table({k: v for k, v in t.items() if k != "attacks"}, "tenants", TENANTS)
    return Tenants(tuple(choice(a, ATTACKS, "tenants.attacks") for a in attacks), **kw)


def _stop(kw: dict[str, Any]) -> Stop:
    stop = Stop(**kw)
    if stop.warmup_s >= stop.duration_s:
        raise SpecError(f"stop.warmup_s: must be < stop.duration_s ({stop.duration_s}), got {stop.warmup_s}")
    return stop


def parse_engine(t: dict) -> Engine:
    return Engine(**read_table(t, "engine", ENGINE))


def load(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors are prefixed with the file name."""
    raw = load_toml(path)
    try:
        return parse(raw)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
