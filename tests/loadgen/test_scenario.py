from pathlib import Path

import pytest

from nnbench.loadgen import scenario as scenario_mod
from nnbench.offline.spec import SweepSpec
from nnbench.suite import load_suite
from nnbench.validate import SpecError

BASE = {"name": "t", "family": "llama", "backends": ["hf"], "mix": [{"methodology": "steering"}]}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"arrivals": {"rates": [-2]}}, "arrivals.rates: must be > 0, got -2"),
        ({"arrivals": {"rates": [0]}}, "arrivals.rates: must be > 0, got 0"),
        ({"arrivals": {"process": "burst"}}, "arrivals.process: unknown value 'burst'; allowed: poisson, constant, gamma, closed"),
        ({"arrivals": {"rate": [1]}}, "arrivals.rate: unknown key; allowed: burstiness, process, rates, think_time_s, users"),
        ({"backends": ["vllm"]}, "backends: unknown value 'vllm'; allowed: hf, raw_hooks, vllm_async, vllm_serve, null"),
        ({"mix": [{"methodology": "steer"}]}, "mix[0].methodology: unknown value 'steer'; allowed: logit_lens"),
        ({"mix": [{"methodology": "steering", "weight": 0}]}, "mix[0].weight: must be > 0, got 0"),
        ({"limits": {"timeout_s": "10"}}, "limits.timeout_s: must be a number, got '10'"),
        ({"stop": {"duration_s": 5, "warmup_s": 5}}, "stop.warmup_s: must be < stop.duration_s (5.0), got 5"),
        ({"color": "red"}, "color: unknown key; allowed: arrivals, backends"),
        ({"arrivals": {"rates": [float("inf")]}}, "arrivals.rates: must be a finite number, got inf"),
        ({"stop": {"duration_s": float("nan")}}, "stop.duration_s: must be a finite number, got nan"),
        ({"slo": {"min_goodput_fraction": 1.5}}, "slo.min_goodput_fraction: must be <= 1, got 1.5"),
        ({"engine": {"gpu_memory_utilization": 2.0}}, "engine.gpu_memory_utilization: must be <= 1, got 2.0"),
        ({"arrivals": {"process": "closed", "users": [1.5]}}, "arrivals.users: must be an integer, got 1.5"),
        ({"family": "mistral"}, "family: unknown value 'mistral'; allowed: gpt2, llama"),
        ({"check": "yes"}, "check: must be true or false, got 'yes'"),
        ({"knee": {"enabled": True}, "arrivals": {"process": "closed"}}, "knee.enabled: the rate search needs an open-loop"),
    ],
)
def test_bad_field_is_refused_with_one_line_naming_it(patch, message):
    with pytest.raises(SpecError) as info:
        scenario_mod.parse(BASE | patch)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_required_field():
    with pytest.raises(SpecError, match="^mix: required$"):
        scenario_mod.parse({k: v for k, v in BASE.items() if k != "mix"})


@pytest.mark.parametrize("path", sorted(Path("scenarios").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path):
    """scenarios/ holds load scenarios, sweep specs (sweep_*) and suites (suite_*)."""
    if path.name.startswith("sweep"):
        assert SweepSpec.load(path).families
    elif path.name.startswith("suite"):
        assert load_suite(path).families()
    else:
        scenario = scenario_mod.load(path)
        assert scenario.name and scenario.mix


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nfamily = "llama"\nbackends = ["hf"]\n[[mix]]\nmethodology = "steering"\n[arrivals]\nrates = [-1]\n')
    with pytest.raises(SpecError, match=r"bad.toml: arrivals.rates: must be > 0, got -1"):
        scenario_mod.load(path)


def test_serve_block_naming_is_a_boolean():
    base = {"name": "n", "family": "llama", "backends": ["vllm_serve"], "mix": [{"methodology": "steering"}]}
    assert scenario_mod.parse(base | {"engine": {"serve_name_each_block": False}}).engine.serve_name_each_block is False
    with pytest.raises(SpecError, match="engine.serve_name_each_block: must be true or false"):
        scenario_mod.parse(base | {"engine": {"serve_name_each_block": "no"}})


def test_a_bad_field_is_refused_without_importing_torch(tmp_path):
    """The CLI's first answer to a typo must not wait for torch (3-4 s on a 2-core machine)."""
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\nfamily = "llama"\nbackends = ["hf"]\n[[mix]]\nmethodology = "steering"\n[arrivals]\nrates = [inf]\n')
    probe = ("import sys; from nnbench.loadgen import scenario\n"
             "try:\n    scenario.load(sys.argv[1])\nexcept Exception as exc:\n    print(exc)\n"
             "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines() == [f"{path}: arrivals.rates: must be a finite number, got inf", "False"], done
