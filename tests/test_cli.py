import subprocess
import sys

import pytest


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnbench", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_run_prints_state_figures_and_timing():
    done = _cli("run", "--methodology", "steering", "--family", "llama", "--backend", "raw_hooks", "--trials", "2")
    assert done.returncode == 0, done.stderr
    assert "state     SUPPORTED" in done.stdout
    assert "versus reference  top-1 1.000" in done.stdout
    assert "ms (median ± std of 2 warm trials)" in done.stdout


def test_bad_choice_names_the_allowed_values():
    done = _cli("run", "--methodology", "steer", "--family", "llama", "--backend", "hf")
    assert done.returncode == 2
    assert "invalid choice: 'steer'" in done.stderr and "logit_lens" in done.stderr


def test_bad_sweep_list_names_the_field():
    done = _cli("sweep", "--backends", "hf,torch", "--quiet")
    assert done.returncode == 2
    assert "backends: unknown value 'torch'" in done.stderr


def test_excluded_combination_says_why():
    done = _cli("run", "--methodology", "attribution_patching", "--family", "gpt2", "--backend", "hf",
                "--workload", "generation")
    assert done.returncode == 2 and "torch.no_grad" in done.stderr


def test_one_cli_names_every_command():
    done = subprocess.run([sys.executable, "-m", "nnbench", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("run", "sweep", "micro", "suite", "report", "loadgen", "compare"):
        assert command in done.stdout


def test_loadgen_and_compare_refuse_bad_input_with_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nfamily = "llama"\nbackends = ["hf"]\n[[mix]]\nmethodology = "steering"\n'
                   '[slo]\nmin_goodput_fraction = 1.5\n')
    done = subprocess.run([sys.executable, "-m", "nnbench", "loadgen", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and done.stderr.strip().endswith("slo.min_goodput_fraction: must be <= 1, got 1.5")
    not_json = tmp_path / "a.json"
    not_json.write_text("{")
    done = subprocess.run([sys.executable, "-m", "nnbench", "compare", str(not_json), str(not_json)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "a.json: not JSON" in done.stderr
