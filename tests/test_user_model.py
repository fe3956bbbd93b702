"""A user's own model directory (``--model DIR``, ``model = "DIR"``): its architecture picks the
family, its content hash keys its references, and an unusable directory is refused in one line."""

import json
import subprocess
import sys

import pytest

from nnbench.loadgen.scenario import parse as parse_scenario
from nnbench.offline.spec import SweepSpec
from nnbench.provision import ModelError, ensure_model, family_of, model_at
from nnbench.validate import SpecError


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnbench", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def user_llama(tmp_path_factory):
    """SmolLM2's files under a directory of the user's (links: no 517 MB copy)."""
    built = ensure_model("llama").path
    mine = tmp_path_factory.mktemp("models") / "my-smollm2"
    mine.mkdir()
    for file in built.iterdir():
        if file.is_file() and file.name != "nnbench-model.json":
            (mine / file.name).symlink_to(file)
    return mine


def _config_only(tmp_path, architectures) -> str:
    (tmp_path / "config.json").write_text(json.dumps({"architectures": architectures}))
    return str(tmp_path)


def test_a_directorys_architecture_picks_its_family_and_its_content_keys_it(user_llama):
    info = model_at(user_llama)
    assert family_of(str(user_llama)) == "llama" and info.family == "llama" and info.name == "my-smollm2"
    assert info.content_hash == ensure_model("llama").content_hash  # same files, same references


def test_an_unsupported_architecture_is_refused_naming_it_and_the_supported_ones(tmp_path):
    with pytest.raises(ModelError, match=r"^sweep.model: model .*: architecture MistralForCausalLM is not supported; "
                                         r"supported: GPT2LMHeadModel, Gemma3ForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM$"):
        SweepSpec.from_mapping({"model": _config_only(tmp_path, ["MistralForCausalLM"])}, "sweep")


def test_a_directory_without_a_config_and_an_unknown_name_are_refused(tmp_path):
    with pytest.raises(ModelError, match="nor an HF model directory \\(no config.json\\)"):
        family_of(str(tmp_path))
    with pytest.raises(ModelError, match="not a built-in model \\(smollm2-135m-instruct, .*qwen2.5-coder-1.5b-instruct\\)"):
        family_of("qwen9-huge")


def test_a_model_fixes_the_family_of_a_sweep_and_a_scenario(tmp_path, user_llama):
    assert SweepSpec.from_mapping({"model": str(user_llama)}).families == ("llama",)
    assert SweepSpec.from_mapping({"model": "gemma-3-270m"}).families == ("gemma3",)
    with pytest.raises(SpecError, match=r"families: model gemma-3-270m is a gemma3 model; leave families out"):
        SweepSpec.from_mapping({"model": "gemma-3-270m", "families": ["gpt2"]})
    scenario = parse_scenario({"name": "mine", "model": str(user_llama), "backends": ["hf"],
                               "mix": [{"methodology": "steering"}]})
    assert scenario.family == "llama" and scenario.model == str(user_llama)


def test_cli_refuses_an_unsupported_model_with_exit_2_before_importing_torch(tmp_path):
    done = _cli("run", "--methodology", "steering", "--backend", "hf", "--model",
                _config_only(tmp_path, ["MistralForCausalLM"]))
    assert done.returncode == 2 and "architecture MistralForCausalLM is not supported" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_a_cell_runs_on_the_users_directory(user_llama):
    done = _cli("run", "--methodology", "steering", "--backend", "raw_hooks", "--model", str(user_llama), "--trials", "1")
    assert done.returncode == 0, done.stderr
    assert "state     SUPPORTED" in done.stdout
    assert f"model     my-smollm2 [{ensure_model('llama').content_hash}]" in done.stdout


def test_a_suites_model_replaces_the_family_of_the_load_scenarios_it_reuses():
    from nnbench.suite import load_suite

    suite = load_suite("scenarios/suite_gpu_load_qwen15.toml")  # reuses the llama load scenarios
    assert [(s.name, s.family, s.model) for s in suite.loads] == [
        ("concurrent_users_gpu", "qwen2", "qwen2.5-coder-1.5b-instruct"),
        ("steering_qps_gpu", "qwen2", "qwen2.5-coder-1.5b-instruct")]
    assert suite.families() == ("qwen2",)
