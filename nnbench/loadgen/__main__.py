"""``python -m nnbench.loadgen SCENARIO.toml`` · ``python -m nnbench.loadgen compare A.json B.json``:
the ``nnbench loadgen`` and ``nnbench compare`` commands under their older name."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from nnbench.cli import main as nnbench_main

    argv = sys.argv[1:] if argv is None else argv
    command = argv if argv[:1] == ["compare"] else ["loadgen", *argv]
    return nnbench_main(command, prog="nnbench.loadgen")


if __name__ == "__main__":
    sys.exit(main())
