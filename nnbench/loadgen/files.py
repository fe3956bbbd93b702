"""A load run's folder: the JSON record, .hgrm percentile tables, per-request JSONL, a Markdown
summary and PNG plots, all under one self-describing directory. Rewritten after every step."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from nnbench.loadgen.recorder import RequestOutcome, StepRecorder
from nnbench.report.loadgen import markdown_summary, plot_curves, plot_latency_percentiles
from nnbench.results import LoadRecord, write_record
from nnbench.runs import RunFolder


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text.replace("@", "_at_"))


class ResultFiles:
    """``<out>/loadgen-<scenario>-<UTC stamp>/loadgen-<scenario>.{json,md}`` and friends."""

    def __init__(self, out_dir: Path, scenario_name: str) -> None:
        folder = RunFolder.create(out_dir, "loadgen", scenario_name)  # unique, even for two runs in one second
        self.dir, self.stem = folder.dir, folder.stem

    @property
    def json_path(self) -> Path:
        return self.dir / f"{self.stem}.json"

    def save_step(self, record: LoadRecord, recorder: StepRecorder, outcomes: Iterable[RequestOutcome]) -> None:
        write_record(record, self.json_path)
        with (self.dir / f"{self.stem}-{_slug(recorder.backend)}-{_slug(recorder.step)}.hgrm").open("wb") as handle:
            recorder.latency.hist.output_percentile_distribution(handle, 1000.0)  # µs → ms
        # one gzip member per step: the log stays readable (gzip.open, zcat) after a crash mid-run,
        # at a tenth of the size of the plain JSONL it replaces
        with gzip.open(self.dir / f"{self.stem}-requests.jsonl.gz", "at") as handle:
            for outcome in sorted(outcomes, key=lambda o: o.id):
                row = asdict(outcome) | {"backend": recorder.backend, "step": recorder.step,
                                         "latency_s": outcome.latency_s, "service_s": outcome.service_s}
                handle.write(json.dumps(row) + "\n")

    def write_all(self, record: LoadRecord) -> None:
        write_record(record, self.json_path)
        (self.dir / f"{self.stem}.md").write_text(markdown_summary(record))
        if record.rows:
            plot_latency_percentiles(record, self.dir / f"{self.stem}-latency.png")
            plot_curves(record, self.dir / f"{self.stem}-curves.png")
        RunFolder(self.dir, self.stem).write_manifest(record)
