import pytest

from nnbench.cells import CELLS, CellKey, CellRegistry
from nnbench.offline.grid import EXCLUDED
from nnbench.vocab import Family, Methodology, Workload


def test_duplicate_key_is_refused():
    registry = CellRegistry()
    registry.cell("steering", "gpt2", "hf", "interactive")(lambda m, j: None)
    with pytest.raises(ValueError, match="registered twice"):
        registry.cell("steering", ("gpt2", "llama"), "hf", "interactive")(lambda m, j: None)


def test_unknown_names_are_refused_at_registration():
    with pytest.raises(ValueError):
        CellRegistry().cell("steer", "gpt2", "hf", "interactive")


def test_missing_cell_names_the_key():
    with pytest.raises(KeyError, match="steering/gpt2/vllm_sync/batched"):
        CellRegistry().get(CellKey("steering", "gpt2", "vllm_sync", "batched"))


@pytest.mark.parametrize("backend", ["hf", "raw_hooks"])
def test_every_meaningful_combination_has_a_cell(backend):
    for methodology in Methodology:
        for family in Family:
            for workload in Workload:
                key = CellKey(methodology, family, backend, workload)
                assert (key in CELLS) == ((methodology, workload) not in EXCLUDED), key


def test_cells_name_the_primitives_they_rely_on():
    assert all(CELLS.get(key).relies_on for key in CELLS)


def test_variants_are_separate_cells_and_aware_is_the_load_default():
    registry = CellRegistry()
    registry.cell("logit_lens", "llama", "vllm_sync", "interactive", variant="portable")(lambda *a: None)
    registry.cell("logit_lens", "llama", "vllm_sync", "interactive", variant="aware")(lambda *a: None)
    assert registry.variants("logit_lens", "llama", "vllm_sync", "interactive") == ("aware", "portable")
    assert registry.default_variant("logit_lens", "llama", "vllm_sync", "interactive") == "aware"
    assert str(CellKey("logit_lens", "llama", "vllm_sync", "interactive", "portable")) == \
        "logit_lens/llama/vllm_sync/interactive[portable]"
    assert registry.default_variant("steering", "llama", "vllm_sync", "interactive") == ""


@pytest.mark.parametrize("backend", ["vllm_sync", "vllm_async", "vllm_serve"])
def test_every_methodology_has_an_aware_vllm_cell_and_portable_where_it_differs(backend):
    for methodology in Methodology:
        for family in Family:
            for workload in Workload:
                if (methodology, workload) in EXCLUDED:
                    continue
                variants = CELLS.variants(methodology, family, backend, workload)
                assert "aware" in variants, (methodology, family, workload)
    # the dual residual stream is where a naive port goes wrong: the Llama lens has both forms
    assert CELLS.variants("logit_lens", "llama", backend, "interactive") == ("aware", "portable")
    assert CELLS.variants("activation_patching", "llama", backend, "generation") == ("aware", "portable")
