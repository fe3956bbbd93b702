"""The whole measurement in one process: per family, sweep → probes → load, engines shared.

A vLLM engine takes 25–65 s to start on the H100. A sweep, a probe run and two load scenarios run
separately start the same engines again and again and spend most of a device call doing so. Here
one ``BackendPool`` holds each (backend, family) engine from the family's first cell to its last
load step, then closes it to make room for the next family. Every part writes the same result
files it writes when run alone; the suite adds a record of its parts and one Markdown report.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from nnbench import provenance
from nnbench.backends.engine import Engine
from nnbench.backends.pool import BackendPool
from nnbench.loadgen import scenario as scenario_mod
from nnbench.loadgen.scenario import Scenario
from nnbench.offline.spec import SweepSpec
from nnbench.provision import ModelRule, with_model
from nnbench.records import EngineOpen, PartRow, SuiteSummary
from nnbench.results import RunRecord, SuiteRecord, finishing, read_record, write_record
from nnbench.runs import RunFolder
from nnbench.validate import Enums, Num, Paths, Rule, SpecError, check_keys, file_name_part, load_toml, read_table, subtable
from nnbench.vocab import DEFAULT_FAMILIES, BackendName, Family

ENGINE_OWNED = ("device", "dtypes", "tensor_parallel_size")
"""sweep fields the suite's [engine] table decides, so every part opens the same engines"""


@dataclass(frozen=True, slots=True)
class SuiteSpec:
    name: str
    engine: Engine
    """device, precision and engine settings of every part (sweep, probes, load)"""
    sweep: SweepSpec | None
    micro_backends: tuple[BackendName, ...] = ()
    """probe backends; none skips the probes"""
    micro_families: tuple[Family, ...] = ()
    loads: tuple[Scenario, ...] = ()
    """load scenarios, their [engine] replaced by the suite's"""
    model: str = ""
    """a built-in model's name or a local HF directory every part runs on (its family the only
    one); empty: each family's default model"""

    def families(self) -> tuple[Family, ...]:
        """The order families are run in: the sweep's, then the probes', then the loads'."""
        named = [*(self.sweep.families if self.sweep else ()), *self.micro_families, *(s.family for s in self.loads)]
        return tuple(dict.fromkeys(named))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "engine": asdict(self.engine),
                "sweep": self.sweep.as_dict() if self.sweep else None,
                "micro_backends": list(self.micro_backends), "micro_families": list(self.micro_families),
                "loads": [s.as_dict() for s in self.loads], **({"model": self.model} if self.model else {})}


MICRO: dict[str, Rule] = {"backends": Enums(BackendName), "families": Enums(Family)}
LOAD: dict[str, Rule] = {"scenarios": Paths(), "duration_s": Num(above=0)}
"""the field tables of a suite's own [micro] and [load]; [engine] and [sweep] are the scenario's and the spec's"""


def parse_suite(raw: dict[str, Any], base: Path) -> SuiteSpec:
    """Build from TOML; scenario paths are relative to the suite file's folder (``base``)."""
    check_keys(raw, ("name", "model", "engine", "sweep", "micro", "load"), "")
    name = file_name_part(raw.get("name"), "name")
    model = ModelRule()(raw.get("model", ""), "model")
    given = {"model": model} if model else {}
    engine = scenario_mod.parse_engine(subtable(raw, "engine"))
    sweep = None
    if "sweep" in raw:
        table = subtable(raw, "sweep")
        for key in ENGINE_OWNED:
            if key in table:
                raise SpecError(f"sweep.{key}: set by the suite's [engine] table, so that every part shares engines")
        if "model" in table:
            raise SpecError("sweep.model: set by the suite's top-level model, so that every part runs one model")
        sweep = SweepSpec.from_mapping(table | given | {"device": engine.device, "dtypes": [engine.dtype],
                                                        "tensor_parallel_size": engine.tensor_parallel_size}, "sweep")
    # `backends = []` is how a suite file says "no probes": an empty list is as if left out
    micro = read_table({k: v for k, v in subtable(raw, "micro").items() if v != []}, "micro", MICRO)
    micro_backends: tuple[BackendName, ...] = micro.get("backends", ())
    micro_families: tuple[Family, ...] = ()
    if micro_backends:
        micro_families = micro.get("families", sweep.families if sweep else DEFAULT_FAMILIES)
        micro_families = with_model(micro_families, model, "families" in micro, "micro.")
    load = read_table(subtable(raw, "load"), "load", LOAD)
    paths = load.get("scenarios", ())
    duration = load.get("duration_s")
    loads = []
    for path in paths:
        scenario = replace(scenario_mod.load(base / path), engine=engine)
        if model:  # the suite's model decides: a shared scenario file names its usual family only
            (family,) = with_model((), model, False, f"load.scenarios {path}: ")
            scenario = replace(scenario, family=family, model=model)
        if duration is not None:
            scenario = replace(scenario, stop=replace(scenario.stop, duration_s=duration))
        loads.append(scenario)
    if sweep is None and not micro_backends and not loads:
        raise SpecError("the suite has nothing to run: give [sweep], [micro] backends or [load] scenarios")
    return SuiteSpec(name, engine, sweep, micro_backends, micro_families, tuple(loads), model)


def load_suite(path: str | Path) -> SuiteSpec:
    path = Path(path)
    raw = load_toml(path)
    try:
        return parse_suite(raw, path.parent)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


class Suite:
    """Runs the parts of a ``SuiteSpec`` family by family on one pool, recording each part."""

    def __init__(self, spec: SuiteSpec, out: Path, show_progress: bool = True) -> None:
        self.spec = spec
        self.folder = RunFolder.create(Path(out), "suite", spec.name)
        self.out = self.folder.dir
        """the parts' run folders are made inside the suite's"""
        self.show_progress = show_progress
        self.record: SuiteRecord = RunRecord("suite", spec.as_dict(), provenance.collect(spec.engine.device, 0, spec.as_dict()))
        self.path = self.folder.record_path

    def run(self) -> RunRecord:
        started = time.monotonic()
        save = lambda: write_record(self.record, self.path)  # noqa: E731 - saved after every part
        with BackendPool() as pool, finishing(self.record, save):
            try:
                for family in self.spec.families():
                    self._family(family, pool, save)
            finally:
                self.record.summary = SuiteSummary(
                    wall_s=time.monotonic() - started,
                    engines=tuple(EngineOpen(c.name, c.family, c.dtype, s) for c, s in pool.open_seconds.items()),
                    failed_parts=sum(r.status != "success" for r in self.record.rows),
                )
        return self.record

    def _family(self, family: Family, pool: BackendPool, save) -> None:
        spec = self.spec
        if spec.sweep and family in spec.sweep.families:
            self._part("sweep", family, "sweep", lambda wrote: self._sweep(family, pool, wrote), save)
        if family in spec.micro_families:
            self._part("micro", family, "probes", lambda wrote: self._micro(family, pool, wrote), save)
        for scenario in (s for s in spec.loads if s.family == family):
            self._part("load", family, scenario.name, lambda wrote, s=scenario: self._load(s, pool, wrote), save)
        pool.close_family(family)

    def _part(self, part: Literal["sweep", "micro", "load"], family: Family, name: str, run, save) -> None:
        """Run one part; a failure is recorded and the next part still runs (Ctrl-C stops all).
        ``run(wrote)`` appends its result file's path to ``wrote`` as soon as it is known, so a
        part that fails or is interrupted still points at what it saved."""
        _say(f"suite {self.spec.name}: {family} {name}")
        started = time.monotonic()
        status, error, wrote = "success", None, list[str]()
        try:
            status = run(wrote)
        except Exception as exc:  # noqa: BLE001 - one broken part must not lose the others' results
            status, error = "error", f"{type(exc).__name__}: {exc}"
            _say(f"suite {self.spec.name}: {family} {name} failed: {error}")
        except BaseException:
            status, error = "cancelled", "interrupted by the user"
            raise
        finally:
            seconds = time.monotonic() - started
            path = wrote[0] if wrote else None
            self.record.rows.append(PartRow(part, family, name, path, seconds, status, error))
            save()

    def _sweep(self, family: Family, pool: BackendPool, wrote: list[str]) -> str:
        from nnbench.offline.run import run_sweep
        from nnbench.progress import cell_progress
        from nnbench.report.markdown import sweep_report

        assert self.spec.sweep is not None  # _family runs this part only for a suite with a sweep
        sweep = replace(self.spec.sweep, families=(family,))
        label = f"{family}-{'-'.join(sweep.backends)}-{sweep.device.replace(':', '')}"
        folder = RunFolder.create(self.out, "sweep", label)
        wrote.append(str(folder.record_path))
        with cell_progress(self.show_progress) as tick:
            record = run_sweep(sweep, out=folder.record_path, on_progress=tick, pool=pool, engine=self.spec.engine)
        folder.report_path.write_text(sweep_report(record))
        folder.write_manifest(record)
        return record.status

    def _micro(self, family: Family, pool: BackendPool, wrote: list[str]) -> str:
        from nnbench.micro.run import run_micro
        from nnbench.progress import cell_progress
        from nnbench.report.markdown import probe_map

        folder = RunFolder.create(self.out, "micro", f"{family}-{'-'.join(self.spec.micro_backends)}-"
                                                     f"{self.spec.engine.device.split(':')[0]}")
        wrote.append(str(folder.record_path))
        with cell_progress(self.show_progress) as tick:
            record = run_micro(self.spec.micro_backends, (family,), out=folder.record_path, pool=pool,
                               on_progress=tick, engine=self.spec.engine, model=self.spec.model)
        folder.report_path.write_text(f"# nnbench micro ({record.status})\n\n{probe_map(record)}\n")
        folder.write_manifest(record)
        return record.status

    def _load(self, scenario: Scenario, pool: BackendPool, wrote: list[str]) -> str:
        import uvloop

        from nnbench.loadgen.run import run_scenario

        before = set(self.out.glob(f"loadgen-{scenario.name}-*"))
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                record = runner.run(run_scenario(scenario, self.out, self.show_progress, pool=pool))
        finally:  # the run's own folder, found however the run ended
            written = sorted(set(self.out.glob(f"loadgen-{scenario.name}-*")) - before)
            wrote.extend(str(d / f"loadgen-{scenario.name}.json") for d in written[-1:])
        return record.status


def suite_report(record: SuiteRecord) -> str:
    """The suite's parts and engine start-ups, the merged map, probe links and load summaries."""
    from nnbench.report.loadgen import markdown_summary
    from nnbench.report.markdown import merge_sweeps, primitive_links, probe_map, sweep_report

    p = record.provenance
    summary = record.summary
    lines = [f"# nnbench suite: {record.spec['name']} ({record.status})", "",
             f"{p.date} · {p.device_name} · nnsight {p.versions.get('nnsight')} · "
             f"vllm {p.versions.get('vllm')} · torch {p.versions.get('torch')} · commit {p.git_commit}", "",
             f"Wall time {summary.wall_s if summary else 0:.0f} s.", "",
             "| part | family | name | seconds | status | file |", "|---|---|---|---|---|---|"]
    for r in record.rows:
        status = r.status + (f": {r.error}" if r.error else "")
        lines.append(f"| {r.part} | {r.family} | {r.name} | {r.seconds:.0f} | {status} | "
                     f"{Path(r.path).name if r.path else '–'} |")
    lines += ["", "Engine start-up (opened once, shared by every part of the family):", "",
              "| backend | family | dtype | open s |", "|---|---|---|---|"]
    lines += [f"| {e.backend} | {e.family} | {e.dtype} | {e.open_s:.1f} |" for e in (summary.engines if summary else ())]
    written = {kind: [Path(r.path) for r in record.rows if r.part == kind and r.path and Path(r.path).is_file()]
               for kind in ("sweep", "micro", "load")}
    sweeps = [read_record(path, "sweep") for path in written["sweep"]]
    micros = [read_record(path, "micro") for path in written["micro"]]
    if sweeps:
        merged = merge_sweeps(sweeps)
        lines += ["", sweep_report(merged).replace("# ", "## ", 1)]
        if micros:
            lines += ["## Failing vLLM cells and their primitives", "", primitive_links(merged, micros)]
    for micro in micros:
        lines += ["", f"## Probes: {', '.join(micro.spec['families'])}", "", probe_map(micro)]
    for path in written["load"]:
        lines += ["", markdown_summary(read_record(path, "loadgen")).replace("# ", "## ", 1)]
    return "\n".join(lines) + "\n"


def run_suite(spec: SuiteSpec, out: Path, show_progress: bool = True) -> tuple[RunRecord, Path]:
    """Run the suite; its folder ``<out>/suite-<name>-<stamp>/`` holds its record, report and
    manifest, and each part's own run folder."""
    suite = Suite(spec, out, show_progress)
    try:
        return suite.run(), suite.path
    finally:
        if suite.path.is_file():
            suite.folder.report_path.write_text(suite_report(suite.record))
            suite.folder.write_manifest(suite.record)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
