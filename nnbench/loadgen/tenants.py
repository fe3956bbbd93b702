"""Adversarial tenants: what one tenant's trace can do to the others on a shared model.

``run_tenants`` runs, per backend and per attack of the scenario's ``[tenants]`` table, the same
canary trace (the scenario's mix, Poisson at ``canary_rate``, every response judged by the oracle)
twice: alone, then beside the attacker. A row says whether the canaries saw it (wrong responses,
errors, isolation failures, or a p99 grown by ``latency_alarm``), their latency and goodput with
and without it, whether the model still answered afterwards, and how long restoring it took.

The attacks (``nnbench.cells.tenants`` holds the attacker's code):

* ``benign``: the control, a well-behaved second tenant; no detector may flag it.
* ``persistent_edit``: the attacker scales a weight in place and leaves; the canaries are sent after.
  The model is then reloaded (``restore_s``) and one canary must pass again.
* ``noisy_neighbour``: the attacker holds the forward pass (``noisy_ms``) on every request it sends.
* ``failing_neighbour``: the attacker's trace raises mid-forward beside the canaries.
* ``capabilities``: the attacker's trace reads a file and an environment variable the run planted
  and starts a process; each is reported yes/no.
* ``shared_script_path``: two tenants send different nested blocks under one script path and line,
  interleaved; a victim response that is not the victim's own answer means the other tenant's code ran.
* ``oversize``: on hf a save of every layer's activations of a large batch; on vLLM a trace carrying
  a large tensor; sent like a noisy neighbour.
* ``installed_edit``: nnsight-serve's register endpoint installs an edit on every tenant's requests;
  a row that says it does not apply elsewhere.
* ``capabilities`` on vllm_serve also posts a body whose unpickling only writes a marker file.

Only backends the run opens itself are attacked (the scenario refuses others), and only on loopback.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from nnbench import provenance
from nnbench.backends.pool import BackendPool
from nnbench.cells import tenants as attacker
from nnbench.cells.registry import CELLS, CellEntry, CellRegistry
from nnbench.jobs import CellJob, CellOutput
from nnbench.loadgen.arrivals import Poisson, schedule
from nnbench.loadgen.checker import ResponseChecker
from nnbench.loadgen.references import ReferenceBook
from nnbench.loadgen.requests import LoadRequest, plan
from nnbench.loadgen.run import prepare_payloads, settle, submitter
from nnbench.loadgen.scenario import Scenario, Stop, Tenants
from nnbench.loadgen.steps import Driven, Step, check, drive, record_step
from nnbench.oracle import Failure, ReferenceStore, compare
from nnbench.oracle.thresholds import STRICT
from nnbench.progress import LoadProgress
from nnbench.provision import cache_root
from nnbench.records import LoadStepRow, Phases, TenantRow, TenantsSummary
from nnbench.results import RunRecord, TenantsRecord, finishing, write_record
from nnbench.runs import RunFolder
from nnbench.vocab import BackendName, State

ATTACKER_IDS = 1_000_000
"""attacker requests are numbered from here, so no canary id is ever one of theirs"""


@dataclass(frozen=True, slots=True)
class Phase:
    """The canaries of one phase, as a load step row (states, latency, goodput, isolation)."""

    row: LoadStepRow
    attacker_requests: int = 0
    attacker_errors: int = 0
    wrong: frozenset[int] = frozenset()
    """ids of the canaries judged SILENTLY_WRONG (every phase sends the same ids)"""
    failed: frozenset[int] = frozenset()
    """ids of the canaries judged ERROR"""
    examples: tuple[str, ...] = ()


@dataclass
class TenantRun:
    """What every attack of one backend shares: the scenario, the open engines, the evidence."""

    scenario: Scenario
    spec: Tenants
    name: BackendName
    pool: BackendPool
    references: ReferenceBook
    checker: ResponseChecker
    check_pool: ThreadPoolExecutor
    progress: LoadProgress
    registry: CellRegistry
    workdir: Path
    attackers: dict[tuple[str, str], attacker.AttackFn]
    payloads: dict[CellJob, Any] = field(default_factory=dict)

    @property
    def config(self):
        return self.scenario.engine.backend_config(self.name, self.scenario.family, model=self.scenario.model)

    @property
    def backend(self) -> Any:
        return self.pool.get(self.config)

    def knobs(self) -> attacker.Knobs:
        marker = self.workdir / "tenant-marker.txt"
        return attacker.Knobs(self.spec.layer, self.spec.noisy_ms, self.spec.edit_scale, marker,
                              oversize_mb=self.spec.oversize_mb)


async def run_tenants(scenario: Scenario, out_dir: Path, show_progress: bool = True,
                      registry: CellRegistry = CELLS, pool: BackendPool | None = None,
                      attackers: dict[tuple[str, str], attacker.AttackFn] = attacker.ATTACKERS,
                      on_folder: Callable[[Path], None] | None = None) -> TenantsRecord:
    """Every attack of ``scenario.tenants`` against every backend; the record is rewritten after each row.

    Args:
        registry: the canaries' cells (and the HF references'); tests plant stand-ins this way.
        attackers: (attack, backend) → the attacker's trace (``nnbench.cells.tenants.ATTACKERS``).
    """
    spec = scenario.tenants
    if spec is None:
        raise ValueError(f"scenario {scenario.name!r} has no [tenants] table")
    folder = RunFolder.create(out_dir, "tenants", scenario.name)
    if on_folder:
        on_folder(folder.dir)
    record: TenantsRecord = RunRecord("tenants", scenario.as_dict(), provenance.collect(
        scenario.engine.device, scenario.seed, scenario.as_dict()))
    (folder.dir / "tenant-marker.txt").write_text("planted by nnbench: a trace should not be able to read this\n")
    os.environ[attacker.Knobs().marker_env] = "planted by nnbench"
    try:
        with nullcontext(pool) if pool else BackendPool() as engines, \
                ThreadPoolExecutor(2, thread_name_prefix="oracle") as check_pool, LoadProgress(show_progress) as progress, \
                finishing(record, save=lambda: _write(record, folder, final=True)):
            references = ReferenceBook(scenario, engines, ReferenceStore(cache_root() / "references"), registry)
            for name in scenario.backends:
                run = TenantRun(scenario, spec, name, engines, references, ResponseChecker(references.evidence),
                                check_pool, progress, registry, folder.dir, attackers)
                references.use(run.config)
                try:
                    for attack in spec.attacks:
                        record.rows.append(await one_row(run, attack))
                        record.summary = TenantsSummary(len(record.rows), sum(r.detected for r in record.rows))
                        _write(record, folder)
                finally:
                    await run.backend.aclose()  # the HTTP session lives on this loop; the pool closes the rest
    finally:
        os.environ.pop(attacker.Knobs().marker_env, None)
    return record


async def one_row(run: TenantRun, attack: str) -> TenantRow:
    """One attack's row. A harness failure (an attacker that cannot be built, a server that will not
    come back) is that row's note and the next attack still runs; Ctrl-C still ends the run."""
    try:
        return await ATTACK_RUNS[attack](run)
    except Exception as exc:  # noqa: BLE001 - one attack's failure is its row, not the run's end
        return TenantRow(attack, run.name, True, f"the harness failed on this row: {Failure.from_exception(exc)}",
                         survived=await answers_or_none(run))


async def answers_or_none(run: TenantRun) -> bool | None:
    try:
        return await answers(run)
    except Exception:  # noqa: BLE001 - asked only to fill a failed row's health column
        return None


def _write(record: TenantsRecord, folder: RunFolder, final: bool = False) -> None:
    from nnbench.report.tenants import markdown

    write_record(record, folder.record_path)
    folder.report_path.write_text(markdown(record))
    if final:
        folder.write_manifest(record)


# ---- the phases: canaries alone, canaries beside an attacker ----

def canary_requests(run: TenantRun) -> list[LoadRequest]:
    """The canary trace: the same for every phase and attack of the run (the scenario's seed)."""
    rng = random.Random(f"{run.scenario.seed}/tenants/{run.spec.canary_rate!r}")
    offsets = schedule(Poisson(run.spec.canary_rate), rng, run.spec.duration_s, None)
    return plan(run.scenario, offsets, rng)


def attacker_requests(run: TenantRun, job: CellJob, rate: float | None) -> list[LoadRequest]:
    """The attacker's sends during a phase: Poisson at ``rate`` (its own seed), or one at the start."""
    if rate is None:
        return [LoadRequest(ATTACKER_IDS, 0.0, job)]
    rng = random.Random(f"{run.scenario.seed}/attacker/{rate!r}")
    offsets = schedule(Poisson(rate), rng, run.spec.duration_s, None)
    return [LoadRequest(ATTACKER_IDS + i, offset, job) for i, offset in enumerate(offsets)]


async def phase(run: TenantRun, label: str, attack: tuple[LoadRequest, ...] | list[LoadRequest] = (),
                attack_payload: Any = None) -> Phase:
    """Drive the canaries (and the attacker's requests, if any) on their intended times; judge the
    canaries only."""
    canaries = canary_requests(run)
    await asyncio.to_thread(run.references.prefetch, [r.job for r in canaries])  # before the clock
    backend = run.backend
    prepare_payloads(backend, run.name, canaries, run.registry, run.payloads)
    scenario = replace(run.scenario, stop=Stop(duration_s=run.spec.duration_s, drain_s=run.scenario.stop.drain_s))
    step = Step(0, f"{label}", run.spec.canary_rate, rate=run.spec.canary_rate)
    requests = sorted([*canaries, *attack], key=lambda r: r.offset_s)

    def payload_of(request: LoadRequest) -> Any:
        return attack_payload if request.id >= ATTACKER_IDS else run.payloads[request.job]

    driven = await drive(scenario, step, f"{run.name} {label}", submitter(backend), payload_of, requests,
                         run.progress, track_overlap=True)
    await settle(backend, run.name, scenario.limits.timeout_s)
    mine = Driven(tuple(c for c in driven.completed if c.request.id < ATTACKER_IDS),
                  {i: j for i, j in driven.jobs.items() if i < ATTACKER_IDS}, driven.seconds, driven.interrupted,
                  driven.machine)
    theirs = [c for c in driven.completed if c.request.id >= ATTACKER_IDS]
    outcomes = await check(mine, run.checker, run.check_pool, scenario.limits.timeout_s)
    row, _ = record_step(scenario, step, run.name, backend.concurrency, outcomes, Phases(0, 0, driven.seconds, 0),
                         driven.interrupted, driven.machine)
    if driven.interrupted:
        raise asyncio.CancelledError
    bad = [o for o in outcomes if o.state in (State.SILENTLY_WRONG, State.ERROR)]
    return Phase(row, len(theirs), sum(isinstance(c.outcome, Failure) for c in theirs),
                 frozenset(o.id for o in bad if o.state == State.SILENTLY_WRONG),
                 frozenset(o.id for o in bad if o.state == State.ERROR),
                 tuple(f"{label} #{o.id} {o.methodology}: {o.note}" for o in bad[:3]))


async def send_one(backend: Any, payload: Any, timeout_s: float) -> Any:
    """One request outside the driver, awaited with a deadline; a raised exception is its ERROR
    outcome (data), never the run's end."""
    try:
        return await asyncio.wait_for(submitter(backend)(payload), timeout_s)
    except Exception as exc:  # noqa: BLE001 - an attacker's (or victim's) failure is what is measured
        return Failure.from_exception(exc)


def attack_payload(run: TenantRun, attack: str) -> tuple[CellJob, Any]:
    """The attacker's job (a canary-shaped one-prompt job) and its payload on this backend."""
    job = canary_requests(run)[0].job
    fn = run.attackers[attack, run.name]
    return job, run.backend.prepare(job, CellEntry(partial(fn, knobs=run.knobs()), ()))


def row_of(attack: str, run: TenantRun, without: Phase, with_: Phase, note: str, **extra: Any) -> TenantRow:
    """The attack's row from its two phases: detected if the canaries saw anything the backend does
    not do alone — a canary right alone and wrong or failed with the attacker (both phases send the
    same canary ids), an isolation failure, or a slowdown (p99 grown by ``latency_alarm`` times and
    by ``latency_alarm_ms``). Canaries wrong alone are the backend's own baseline, reported apart:
    on the H200 (vLLM bf16) 5 of 76 were wrong in every phase, with or without an attacker."""
    a, b = without.row, with_.row
    factor = b.latency.p99_ms / a.latency.p99_ms if a.latency.p99_ms and b.latency.p99_ms else None
    wrong, errors = b.states[State.SILENTLY_WRONG], b.states[State.ERROR]
    alone_bad = without.wrong | without.failed
    caused = (len(with_.wrong - alone_bad), len(with_.failed - without.failed))  # wrong alone, failed with: caused
    isolation = len(b.isolation_failures)
    slower = factor is not None and factor >= run.spec.latency_alarm and \
        b.latency.p99_ms - a.latency.p99_ms >= run.spec.latency_alarm_ms  # type: ignore[operator]
    detected = bool(any(caused) or isolation or slower)
    return TenantRow(attack, run.name, True, note, detected, b.requests, wrong, errors, isolation,
                     (len(without.wrong), len(without.failed)), caused, (*without.examples, *with_.examples)[:3],
                     (a.latency.p50_ms, b.latency.p50_ms), (a.latency.p99_ms, b.latency.p99_ms),
                     (a.goodput_rps + a.goodput_degraded_rps, b.goodput_rps + b.goodput_degraded_rps), factor,
                     with_.attacker_requests, with_.attacker_errors, **extra)


async def answers(run: TenantRun) -> bool:
    """One canary, judged: does the model still answer correctly?"""
    request = canary_requests(run)[:1]
    await asyncio.to_thread(run.references.prefetch, [r.job for r in request])
    prepare_payloads(run.backend, run.name, request, run.registry, run.payloads)
    outcome = await send_one(run.backend, run.payloads[request[0].job], run.scenario.limits.timeout_s)
    return run.checker.check(request[0].job, outcome, []).state in (State.SUPPORTED, State.SUPPORTED_DEGRADED)


async def restore(run: TenantRun) -> float:
    """Reload the model: the only way back from an edit nobody recorded. Seconds it took."""
    started = time.perf_counter()
    await run.backend.aclose()  # its HTTP session is bound to this loop: closed here, not left to the collector
    await asyncio.to_thread(run.pool.release, run.config)
    await asyncio.to_thread(run.pool.get, run.config)
    run.payloads.clear()  # prepared for the old backend object
    return time.perf_counter() - started


# ---- one function per attack ----

def _in_process(run: TenantRun, attack: str) -> TenantRow | None:
    """A row saying so when no attacker is written for this backend, else None."""
    if (attack, run.name) not in run.attackers:
        return TenantRow(attack, run.name, False, f"no {attack} attacker is written for {run.name} yet "
                         f"(written for: {', '.join(b for a, b in run.attackers if a == attack) or 'none'})")
    return None


async def persistent_edit(run: TenantRun) -> TenantRow:
    if (skip := _in_process(run, "persistent_edit")) is not None:
        return skip
    without = await phase(run, "without")
    job, payload = attack_payload(run, "persistent_edit")
    outcome = await send_one(run.backend, payload, run.scenario.limits.timeout_s)
    with_ = await phase(run, "after the edit")
    survived = await answers(run) or with_.row.states[State.ERROR] < with_.row.requests
    restore_s = await restore(run)
    clean = await answers(run)
    note = (f"layer {run.spec.layer}'s MLP weights x{run.spec.edit_scale:g} in place by one request "
            f"({'it failed: ' + str(outcome) if isinstance(outcome, Failure) else 'it returned normally'}); "
            f"canaries sent afterwards, then the model reloaded")
    return replace(row_of("persistent_edit", run, without, replace(with_, attacker_requests=1,
                                                                    attacker_errors=int(isinstance(outcome, Failure))),
                          note), survived=survived, restore_s=restore_s, clean_after_restore=clean)


async def beside_canaries(run: TenantRun, attack: str, what: str) -> TenantRow:
    """The attacks that keep sending at ``attacker_rate`` through the canaries' second phase
    (benign, noisy, failing, oversize): the same two phases, the attacker's trace is what differs."""
    if (skip := _in_process(run, attack)) is not None:
        return skip
    without = await phase(run, "without")
    job, payload = attack_payload(run, attack)
    with_ = await phase(run, "with", attacker_requests(run, job, run.spec.attacker_rate), payload)
    note = f"{what}, {run.spec.attacker_rate:g} req/s beside the canaries"
    return replace(row_of(attack, run, without, with_, note), survived=await answers(run))


async def oversize(run: TenantRun) -> TenantRow:
    """On hf the oversize save; on vLLM the oversize request (a trace carrying ``oversize_mb`` of
    ballast, deserialized engine-side with every request), sent like a noisy neighbour."""
    if run.name == BackendName.HF:
        what = f"every layer's residual of a {attacker.OVERSIZE_BATCH}-copy batch saved and returned"
    else:
        what = f"each request a well-formed trace carrying {run.spec.oversize_mb:g} MB of ballast"
    return await beside_canaries(run, "oversize", what)


async def capabilities(run: TenantRun) -> TenantRow:
    if (skip := _in_process(run, "capabilities")) is not None:
        return skip
    without = await phase(run, "without")
    job, payload = attack_payload(run, "capabilities")
    outcome = await send_one(run.backend, payload, run.scenario.limits.timeout_s)
    with_ = replace(await phase(run, "after"), attacker_requests=1, attacker_errors=int(isinstance(outcome, Failure)))
    found: dict[str, bool] = {}
    if isinstance(outcome, CellOutput):
        flags = outcome.per_prompt[0].dists["capabilities"][0]
        found = {name: bool(flags[i] > 0.5) for i, name in enumerate(attacker.CAPABILITIES)}
        note = "inside a trace: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in found.items())
    else:
        note = f"the probing trace failed: {outcome}"
    if run.name == BackendName.VLLM_SERVE:
        found["deserialization"], what = await deserialization_probe(run)
        note += f"; a crafted request body {what}"
    else:
        note += "; deserialization: no request body on an in-process backend"
    return replace(row_of("capabilities", run, without, with_, note), capabilities=found, survived=await answers(run))


async def deserialization_probe(run: TenantRun) -> tuple[bool, str]:
    """POST a pickle whose unpickling writes a marker file (and does nothing else) to the server
    this run started on loopback; the marker's existence afterwards is the answer."""
    import aiohttp

    marker = run.workdir / "deserialization-marker.txt"
    marker.unlink(missing_ok=True)
    backend = run.backend
    body = attacker.deserialization_body(marker)
    timeout = aiohttp.ClientTimeout(total=run.scenario.limits.timeout_s)
    async with aiohttp.ClientSession(headers=backend.headers, timeout=timeout) as session, \
            session.post(f"{backend.url}/v1/nnsight/generate", data=body) as reply:
        status = reply.status
        await reply.read()
    ran = marker.exists()
    return ran, (f"ran code at deserialization (the marker file was written; HTTP {status})" if ran
                 else f"did not run code at deserialization (no marker; HTTP {status})")


async def shared_script_path(run: TenantRun) -> TenantRow:
    """Two tenants, one script path and line, different nested blocks, interleaved. The victim's
    own answer is its script run under a path of its own first; each victim response under the
    shared path is compared with it (and with the attacker's, to name what ran). Over HTTP each
    tenant's request is serialized as if from its own client process (``own_client_caches``), so
    only the server's memo can mix them; in process (hf, vllm_async) the one process is the server."""
    job = canary_requests(run)[0].job
    victim_body, attacker_body, script = attacker.script_bodies(run.name, job.family, run.spec.layer)
    victim_src, attacker_src = script(victim_body, "victim_out"), script(attacker_body, "attacker_out")
    backend, timeout_s = run.backend, run.scenario.limits.timeout_s
    scoped = attacker.own_client_caches if run.name == BackendName.VLLM_SERVE else nullcontext

    def entry(src: str, filename: str, save_name: str) -> CellEntry:
        with scoped():
            cell = attacker.script_cell(run.name, attacker.compiled_script(src, filename), save_name)
            return backend.prepare(job, CellEntry(cell, ()))

    expected = await send_one(backend, entry(victim_src, f"{run.workdir}/victim-own.py", "victim_out"), timeout_s)
    attacker_answer = await send_one(backend, entry(attacker_src, f"{run.workdir}/attacker-own.py", "attacker_out"),
                                     timeout_s)
    confused = errors = 0
    notes: list[str] = []
    for _ in range(run.spec.script_pairs):
        for src, name in ((attacker_src, "attacker_out"), (victim_src, "victim_out")):
            outcome = await send_one(backend, entry(src, attacker.SHARED_PATH, name), timeout_s)
            if name == "attacker_out":
                continue
            if isinstance(outcome, Failure):
                errors += 1
                notes.append(f"the victim's request saved the attacker's name: {outcome}" if "attacker_out" in str(outcome)
                             else str(outcome))
            elif isinstance(expected, CellOutput) and not compare(outcome, expected).within(STRICT):
                confused += 1
                if isinstance(attacker_answer, CellOutput) and compare(outcome, attacker_answer).within(STRICT):
                    notes.append("the victim got the attacker's answer")
    if isinstance(expected, Failure):
        notes.insert(0, f"the victim's own script failed: {expected}")
    what = notes[0] if notes else "every victim response was its own answer"
    note = (f"{run.spec.script_pairs} interleaved pairs under {attacker.SHARED_PATH} line 4: {confused} victim "
            f"responses wrong, {errors} failed ({what})")
    return TenantRow("shared_script_path", run.name, True, note, bool(confused or errors), run.spec.script_pairs,
                     confused, errors, caused=(confused, errors), attacker_requests=run.spec.script_pairs,
                     survived=await answers(run))


async def installed_edit(run: TenantRun) -> TenantRow:
    """nnsight-serve's register endpoint: the attacker installs an unnamed edit (one layer's output
    scaled on every request) with nnsight's own ``model.edit(serve=url)`` and leaves; the canaries
    are sent afterwards; then the edit is cleared and one canary must pass again."""
    if run.name != BackendName.VLLM_SERVE:
        return TenantRow("installed_edit", run.name, False,
                         f"not applicable on {run.name}: POST /v1/nnsight/register/{{id}} exists on nnsight-serve only")
    without = await phase(run, "without")
    backend, job = run.backend, canary_requests(run)[0].job
    started = time.perf_counter()
    edit = await asyncio.wait_for(asyncio.to_thread(
        attacker.installed_edit_serve, backend.client, backend.url, backend.api_key, job, run.knobs()),
        run.scenario.limits.timeout_s)
    install_s = time.perf_counter() - started
    with_ = replace(await phase(run, "after the install"), attacker_requests=1)
    survived = await answers(run) or with_.row.states[State.ERROR] < with_.row.requests
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.to_thread(edit.clear), run.scenario.limits.timeout_s)
    clear_s = time.perf_counter() - started
    clean = await answers(run)
    note = (f"an unnamed edit (layer {run.spec.layer}'s MLP output x{run.spec.edit_scale:g}) registered in "
            f"{install_s:.2f} s by one tenant; canaries sent afterwards; then cleared through the same endpoint")
    return replace(row_of("installed_edit", run, without, with_, note), survived=survived, restore_s=clear_s,
                   clean_after_restore=clean)


ATTACK_RUNS: dict[str, Callable[[TenantRun], Any]] = {
    "benign": lambda run: beside_canaries(run, "benign", "a well-behaved second tenant (steering x1.0): the false-alarm control"),
    "persistent_edit": persistent_edit,
    "noisy_neighbour": lambda run: beside_canaries(
        run, "noisy_neighbour", f"{run.spec.noisy_ms:g} ms held inside the forward pass"),
    "failing_neighbour": lambda run: beside_canaries(run, "failing_neighbour", "a RuntimeError raised mid-forward"),
    "capabilities": capabilities,
    "shared_script_path": shared_script_path,
    "installed_edit": installed_edit,
    "oversize": oversize,
}
