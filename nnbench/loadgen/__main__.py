"""``python -m nnbench.loadgen SCENARIO.toml`` · ``python -m nnbench.loadgen compare A.json B.json``"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from nnbench.validate import SpecError

DEFAULT_OUT = Path("nnbench-results")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        parser = argparse.ArgumentParser(prog="python -m nnbench.loadgen compare")
        parser.add_argument("a", type=Path)
        parser.add_argument("b", type=Path)
        args = parser.parse_args(argv[1:])
        from nnbench.loadgen.compare import compare

        try:
            print(compare(args.a, args.b))
        except (OSError, ValueError) as exc:
            print(f"nnbench.loadgen: error: {exc}", file=sys.stderr)
            return 2
        return 0

    parser = argparse.ArgumentParser(prog="python -m nnbench.loadgen",
                                     description="Concurrent nnsight traces, every response checked.")
    parser.add_argument("scenario", type=Path, help="a scenario TOML (see scenarios/)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT}/)")
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    args = parser.parse_args(argv)

    from nnbench.loadgen import scenario as scenario_mod

    try:
        scenario = scenario_mod.load(args.scenario)
    except SpecError as exc:
        print(f"nnbench.loadgen: error: {exc}", file=sys.stderr)
        return 2

    import uvloop

    from nnbench.loadgen.run import run_scenario
    from nnbench.report.loadgen import markdown_summary
    from nnbench.signals import treat_sigterm_as_sigint

    treat_sigterm_as_sigint()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            record = runner.run(run_scenario(scenario, args.out, show_progress=not args.quiet))
    except KeyboardInterrupt:
        print("nnbench.loadgen: interrupted; what was measured is written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the record (status "error") is already written
        print(f"nnbench.loadgen: error: {type(exc).__name__}: {exc} (results written under {args.out}/)",
              file=sys.stderr)
        return 1
    print(markdown_summary(record))
    return 0 if record.status == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
