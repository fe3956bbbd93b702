"""``nnbench run|sweep|micro|suite|report|loadgen|compare``: argparse → one entry call → exit code.

Exit codes: 0 done; 1 the run failed or found a cell not supported (``run``); 2 bad input (a spec
or scenario field, a missing or malformed result file), named in one line; 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nnbench.schema import RecordError
from nnbench.validate import SpecError, require_device
from nnbench.vocab import DTYPES, BackendName, Family, Methodology, State, Workload

DEFAULT_OUT = Path("nnbench-results")


def _list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _sweep_overrides(args: argparse.Namespace) -> dict:
    table = {}
    for name in ("methodologies", "families", "backends", "workloads", "dtypes"):
        if getattr(args, name, None):
            table[name] = _list(getattr(args, name))
    for name in ("device", "trials", "warmup", "batch_size", "new_tokens", "layer", "seed", "tensor_parallel_size", "model", "prompts"):
        if getattr(args, name, None) is not None:
            table[name] = getattr(args, name)
    return table


def _timing_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu (default) or cuda[:N]")
    parser.add_argument("--warmup", type=int, help="untimed runs before the trials (default 1)")
    parser.add_argument("--trials", type=int, help="timed runs (default 3)")
    parser.add_argument("--batch-size", type=int, dest="batch_size", help="prompts per batched cell (default 4)")
    parser.add_argument("--new-tokens", type=int, dest="new_tokens", help="greedy tokens per generation cell (default 4)")
    parser.add_argument("--layer", type=int, help="layer steered/patched/ablated/read (default 6)")
    parser.add_argument("--seed", type=int, help="seed of the steering vector (default 0)")
    parser.add_argument("--tensor-parallel-size", type=int, dest="tensor_parallel_size", help="vLLM backends only")
    parser.add_argument("--prompts", type=int, help="a templated pool of N prompts (nnbench/prompt_sets.py) instead of "
                                                   "the built-in 8 facts and 4 IOI pairs")
    _model_flag(parser)


def _model_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a built-in model (e.g. qwen2.5-coder-1.5b-instruct) or a local HF model "
                                        "directory; its architecture picks the family (default: each family's own)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnbench", description="Where nnsight interventions hold, and how fast.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one cell and print its state, oracle figures and timing")
    run.add_argument("--methodology", required=True, choices=[m.value for m in Methodology])
    run.add_argument("--family", choices=[f.value for f in Family], help="required unless --model names the model")
    run.add_argument("--backend", required=True, choices=[b.value for b in BackendName if b != BackendName.NULL])
    run.add_argument("--workload", default="interactive", choices=[w.value for w in Workload])
    run.add_argument("--dtype", default="float32", choices=DTYPES)
    _timing_flags(run)

    sweep = sub.add_parser("sweep", help="run a grid of cells; write JSON + Markdown; print the map")
    sweep.add_argument("--spec", type=Path, help="a TOML sweep spec (see scenarios/sweep_cpu.toml)")
    sweep.add_argument("--methodologies", help="comma list (default: all seven)")
    sweep.add_argument("--families", help="comma list (default: gpt2,llama)")
    sweep.add_argument("--backends", help="comma list (default: hf,raw_hooks)")
    sweep.add_argument("--workloads", help="comma list (default: interactive,batched,generation)")
    sweep.add_argument("--dtypes", help="comma list (default: float32)")
    sweep.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT}/)")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    _timing_flags(sweep)

    micro = sub.add_parser("micro", help="primitive probes: reads and writes per module kind, judged per backend")
    micro.add_argument("--backend", default="hf,raw_hooks", help="comma list (default: hf,raw_hooks)")
    micro.add_argument("--families", help="comma list (default: gpt2,llama; with --model, the model's family)")
    _model_flag(micro)
    micro.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT}/)")
    suite = sub.add_parser("suite", help="sweep, probes and load scenarios in one process, engines shared")
    suite.add_argument("suite", type=Path, help="a suite TOML (see scenarios/suite_gpu.toml)")
    suite.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT}/)")
    suite.add_argument("--quiet", action="store_true", help="no progress bars")

    report = sub.add_parser("report", help="one Markdown report from saved sweep (and probe) records")
    report.add_argument("sweeps", nargs="+", type=Path, help="sweep JSON files; a later file's rows win")
    report.add_argument("--micro", type=Path, action="append", default=[],
                        help="a probe record (repeatable): link each failing vLLM cell to its primitives")
    report.add_argument("--out", type=Path, help="write the Markdown here too")

    load = sub.add_parser("loadgen", help="concurrent nnsight traces against backends, every response checked")
    load.add_argument("scenario", type=Path, help="a scenario TOML (see scenarios/)")
    load.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT}/)")
    load.add_argument("--quiet", action="store_true", help="no progress display")

    compare = sub.add_parser("compare", help="what changed between two load records")
    compare.add_argument("a", type=Path, help="the earlier load record (JSON)")
    compare.add_argument("b", type=Path, help="the later load record (JSON)")

    micro.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    micro.add_argument("--dtype", default="float32", choices=DTYPES,
                       help="precision of the probed backends; HF float32 is always the reference")
    micro.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None, prog: str = "nnbench") -> int:
    args = build_parser().parse_args(argv)
    from nnbench.signals import treat_sigterm_as_sigint

    treat_sigterm_as_sigint()
    commands = {"run": _run_one, "sweep": _sweep, "micro": _micro, "suite": _suite, "report": _report,
                "loadgen": _loadgen, "compare": _compare}
    try:
        return commands[args.command](args)
    except (SpecError, RecordError) as exc:  # bad input, named: the only exit 2
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted (whatever was measured before it is written)", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a failed run: its record (status "error") is already written
        print(f"{prog}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _run_one(args: argparse.Namespace) -> int:
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec

    if not args.family and not args.model:
        raise SpecError("run: give --family or --model")
    table = _sweep_overrides(args) | {
        "methodologies": [args.methodology], "backends": [args.backend], "workloads": [args.workload],
        "dtypes": [args.dtype],
    } | ({"families": [args.family]} if args.family else {})
    spec = SweepSpec.from_mapping(table)
    require_device(spec.device)
    for family in spec.families:
        require_layers(family, spec.model, [("--layer", spec.layer)])
    record = run_sweep(spec)
    if not record.rows:
        raise SpecError(f"{args.methodology} × {args.workload} is not a cell: {record.excluded[0].reason}")
    row = record.rows[0]
    print(f"cell      {row.methodology}/{row.family}/{row.backend}/{row.workload} ({row.dtype}, {row.device})")
    print(f"model     {row.model} [{row.model_hash}]{' synthetic' if row.synthetic else ''}")
    print(f"state     {row.state}{'  (' + row.note + ')' if row.note else ''}")
    for label, v in (("versus reference", row.versus_reference), ("versus precision", row.versus_precision)):
        if v:
            print(f"{label:<17} top-1 {_e(v.top1, '.3f')}  TV mean {_e(v.mean_tv)} max {_e(v.max_tv)}  "
                  f"rel.err {_e(v.max_rel_err)}")
    if row.effect:
        for i, p in enumerate(row.effect.prompts):
            print(f"effect {i:<10} reference TV {_e(p.size, '.3f')} (margin {_e(p.margin, '.0f')}x)  "
                  f"cosine {_e(p.cosine, '.3f')}  size {_e(p.ratio, '.2f')}x{'' if p.certifies else '  (cannot certify)'}")
    if row.floor:
        f = row.floor
        print(f"floor     TV {_e(f.tv)} against HF {f.reference_dtype} (fp32 {_e(f.versus_fp32)}, "
              f"matched {_e(f.versus_matched)}, HF re-run {_e(f.hf_rerun)}); degraded allows {_e(f.degraded_max_tv)}")
    if row.timing:
        t, b = row.timing, row.baseline
        print(f"timing    {t.median_s * 1e3:.1f} ± {t.std_s * 1e3:.1f} ms (median ± std of {t.trials} warm trials)")
        if b:
            print(f"baseline  {b.median_s * 1e3:.1f} ms without intervention; overhead ×{_e(row.overhead, '.2f')}")
    return 0 if row.state in (State.SUPPORTED, State.SUPPORTED_DEGRADED) else 1


def require_layers(family, model: str, layers: list[tuple[str, int]]) -> None:
    """Every layer a run names exists in its model: ``layer = 99`` of SmolLM2's 30 made every HF
    reference fail, and every response NO_REFERENCE. Read from the model's config (built on first use)."""
    from nnbench.cells.common import family_config

    count = int(family_config(family, model).num_hidden_layers)
    for where, layer in layers:
        if layer >= count:
            raise SpecError(f"{where}: {layer}, but the {family} model{' ' + model if model else ''} has {count} "
                            f"layers (0-{count - 1})")


def _e(x: float | None, spec: str = ".2e") -> str:
    """A figure, or "nan" where it was NaN or infinite (written as null)."""
    return "nan" if x is None else format(x, spec)


def _sweep(args: argparse.Namespace) -> int:
    from nnbench.offline.run import run_sweep
    from nnbench.offline.spec import SweepSpec
    from nnbench.progress import cell_progress
    from nnbench.report.markdown import sweep_report
    from nnbench.runs import RunFolder

    base = SweepSpec.load(args.spec).as_dict() if args.spec else {}
    spec = SweepSpec.from_mapping(base | _sweep_overrides(args))
    require_device(spec.device)
    for family in spec.families:
        require_layers(family, spec.model, [("layer", spec.layer)])
    label = f"{'-'.join(spec.families)}-{'-'.join(spec.backends)}-{spec.device.replace(':', '')}"
    folder = RunFolder.create(args.out, "sweep", label)
    with cell_progress(enabled=not args.quiet) as tick:
        try:
            record = run_sweep(spec, out=folder.record_path, on_progress=tick)
        finally:
            print(f"results: {folder.dir}/", file=sys.stderr)
    report = sweep_report(record)
    folder.report_path.write_text(report)
    folder.write_manifest(record)
    print(report)
    return _exit(record)


def _micro(args: argparse.Namespace) -> int:
    from nnbench.backends.engine import Engine
    from nnbench.micro.run import run_micro
    from nnbench.progress import cell_progress
    from nnbench.report.markdown import probe_map
    from nnbench.runs import RunFolder
    from nnbench.validate import enum_list

    backends = enum_list(_list(args.backend), BackendName, "backend")
    from nnbench.provision import ModelRule, with_model

    model = ModelRule()(args.model or "", "model")
    families = with_model(enum_list(_list(args.families or "gpt2,llama"), Family, "families"), model,
                          bool(args.families), "")
    require_device(args.device)
    folder = RunFolder.create(args.out, "micro", f"{'-'.join(families)}-{'-'.join(backends)}-{args.device.split(':')[0]}")
    with cell_progress(enabled=not args.quiet) as tick:
        record = run_micro(backends, families, out=folder.record_path, on_progress=tick,
                           engine=Engine(args.device, args.dtype), model=model)
    report = f"# nnbench micro ({record.status})\n\n{probe_map(record)}\n"
    folder.report_path.write_text(report)
    folder.write_manifest(record)
    print(report)
    print(f"results: {folder.dir}/", file=sys.stderr)
    return _exit(record)



def _suite(args: argparse.Namespace) -> int:
    from nnbench.suite import load_suite, run_suite

    spec = load_suite(args.suite)
    require_device(spec.engine.device, f"{args.suite}: engine.device")
    record, path = run_suite(spec, args.out, show_progress=not args.quiet)
    print(path.with_suffix(".md").read_text())
    print(f"results: {path.parent}/ (the parts' folders inside it)", file=sys.stderr)
    return 0 if record.status == "success" and record.summary and not record.summary.failed_parts else 1


def _loadgen(args: argparse.Namespace) -> int:
    import asyncio

    import uvloop

    from nnbench.loadgen import scenario as scenario_mod
    from nnbench.loadgen.run import run_scenario
    from nnbench.report.loadgen import markdown_summary

    scenario = scenario_mod.load(args.scenario)  # a bad field is refused before torch is imported
    require_device(scenario.engine.device, f"{args.scenario}: engine.device")
    require_layers(scenario.family, scenario.model,
                   [(f"{args.scenario}: mix[{i}].layer", entry.layer) for i, entry in enumerate(scenario.mix)]
                   + ([(f"{args.scenario}: tenants.layer", scenario.tenants.layer)] if scenario.tenants else []))
    if scenario.tenants is not None:
        return _tenants(scenario, args)
    folder = _Announced()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            record = runner.run(run_scenario(scenario, args.out, show_progress=not args.quiet, on_folder=folder))
        finally:
            folder.end()
    print(markdown_summary(record))
    return _exit(record)


def _tenants(scenario, args: argparse.Namespace) -> int:
    """A scenario with a ``[tenants]`` table: the adversarial-tenant rows instead of load steps."""
    import asyncio

    import uvloop

    from nnbench.loadgen.tenants import run_tenants
    from nnbench.report.tenants import markdown

    folder = _Announced()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            record = runner.run(run_tenants(scenario, args.out, show_progress=not args.quiet, on_folder=folder))
        finally:
            folder.end()
    print(markdown(record))
    return _exit(record)


class _Announced:
    """The run folder, printed when the run creates it and again at the end; "nothing was
    written" when the run stopped before it existed."""

    def __init__(self) -> None:
        self.dir: Path | None = None

    def __call__(self, folder: Path) -> None:
        self.dir = folder
        print(f"results: {folder}/", file=sys.stderr)

    def end(self) -> None:
        print(f"results: {self.dir}/" if self.dir else "results: nothing was written (the run stopped before its folder)",
              file=sys.stderr)


def _exit(record) -> int:
    """0 for success; 1 for a run that failed (judged nothing, said why) or raised."""
    if record.status == "failed":
        print(f"nnbench: run failed: {record.error}", file=sys.stderr)
    return 0 if record.status == "success" else 1


def _compare(args: argparse.Namespace) -> int:
    from nnbench.loadgen.compare import compare

    for path in (args.a, args.b):
        if not path.is_file():
            raise SpecError(f"compare: no such file {str(path)!r}")
    print(compare(args.a, args.b))
    return 0


def _report(args: argparse.Namespace) -> int:
    from nnbench.report.markdown import merge_sweeps, primitive_links, sweep_report
    from nnbench.results import read_record

    for path in [*args.sweeps, *args.micro]:
        if not path.is_file():
            raise SpecError(f"report: no such file {str(path)!r}")
    merged = merge_sweeps([read_record(path, "sweep") for path in args.sweeps])
    text = sweep_report(merged)
    if args.micro:
        micros = [read_record(p, "micro") for p in args.micro]
        text += "\n## Failing vLLM cells and their primitives\n\n" + primitive_links(merged, micros) + "\n"
    if args.out:
        try:
            args.out.write_text(text)
        except OSError as exc:
            raise SpecError(f"--out {args.out}: cannot write the report there ({exc.strerror or exc})") from None
    print(text)
    return 0
