import pytest

from nnbench.offline.grid import EXCLUDED, expand
from nnbench.offline.spec import SweepSpec
from nnbench.validate import SpecError


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"methodology": ["steering"]}, "methodology: unknown key; allowed: alpha, backends"),
        ({"backends": ["hf", "vllm"]}, "backends: unknown value 'vllm'; allowed: hf, raw_hooks, vllm_sync"),
        ({"trials": 0}, "trials: must be >= 1, got 0"),
        ({"trials": "3"}, "trials: must be an integer, got '3'"),
        ({"dtypes": ["fp8"]}, "dtypes: unknown value 'fp8'; allowed: float32, bfloat16, float16"),
        ({"device": "tpu"}, "device: must be 'cpu' or 'cuda[:N]', got 'tpu'"),
        ({"device": "cuda:x"}, "device: must be 'cpu' or 'cuda[:N]', got 'cuda:x'"),
        ({"trials": 1.5}, "trials: must be an integer, got 1.5"),
        ({"dtypes": []}, "dtypes: must be a non-empty list of float32, bfloat16, float16"),
        ({"alpha": float("inf")}, "alpha: must be a finite number, got inf"),
        ({"workloads": []}, "workloads: must be a non-empty list"),
    ],
)
def test_bad_field_is_named_with_the_allowed_values(table, message):
    with pytest.raises(SpecError) as info:
        SweepSpec.from_mapping(table, "sweep")
    assert message in str(info.value)
    assert str(info.value).startswith("sweep.")


def test_default_grid_covers_everything_but_the_exclusions():
    runs = expand(SweepSpec())
    assert len(runs) == (7 * 3 - len(EXCLUDED)) * 2 * 2
    batched = [r for r in runs if r.key.workload == "batched"]
    assert all(len(r.job.prompts) == 4 for r in batched)
    assert all(r.job.prompts[0].corrupt for r in runs if r.key.methodology == "activation_patching")


def test_spec_file_round_trip(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[sweep]\nmethodologies = ["steering"]\nbackends = ["raw_hooks"]\ntrials = 2\n')
    spec = SweepSpec.load(path)
    assert spec.methodologies == ("steering",) and spec.trials == 2 and spec.families == ("gpt2", "llama")


def test_a_records_spec_reads_back_with_the_family_steering_norm():
    """A record stores alpha as null (the family's calibrated norm); reading it back must work."""
    from nnbench.offline.spec import SweepSpec

    spec = SweepSpec()
    assert spec.alpha is None and SweepSpec.from_mapping(spec.as_dict()) == spec
