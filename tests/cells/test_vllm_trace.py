"""The trace-chain driver every vLLM backend runs cells through (pure Python: no engine needed)."""

import asyncio

import pytest
import torch

from nnbench.cells.vllm_trace import MissingSave, VllmTrace, arun_chain, next_token_rows, per_invoke, run_chain
from nnbench.jobs import PromptOutput


def _two_traces(trace_kwargs):
    """A clean trace whose saves build the patched one (as activation patching does)."""
    def patched(saves, trace_kwargs):
        rows = [saves["clean"][0] * 10]
        return VllmTrace(("patched", trace_kwargs), ("rows",), lambda s: tuple(PromptOutput({"x": r}) for r in s["rows"]))
    return VllmTrace(("clean", trace_kwargs), ("clean",), None, then=patched)


def _execute(log):
    def execute(build):
        traced = build({"backend": len(log)})
        log.append(traced.tracer)
        saves = {"clean": [torch.ones(2)]} if traced.tracer[0] == "clean" else {"rows": [torch.full((2,), 10.0)]}
        return traced, saves
    return execute


def test_chain_runs_each_trace_with_fresh_kwargs_and_decodes_the_last():
    log = []
    (out,) = run_chain(_two_traces, _execute(log))
    assert log == [("clean", {"backend": 0}), ("patched", {"backend": 1})]
    assert out.dists["x"].tolist() == [10.0, 10.0]


def test_async_chain_matches_the_sync_one():
    log = []
    sync = _execute(log)

    async def execute(build):
        await asyncio.sleep(0)
        return sync(build)

    (out,) = asyncio.run(arun_chain(_two_traces, execute))
    assert [t[0] for t in log] == ["clean", "patched"] and out.dists["x"].tolist() == [10.0, 10.0]


def test_a_chain_that_ends_without_a_decoder_is_refused():
    with pytest.raises(TypeError, match="decode"):
        run_chain(lambda kw: VllmTrace("t", ("x",), None), lambda build: (build({}), {"x": 1}))


def test_a_trace_must_declare_its_saves():
    with pytest.raises(TypeError, match="declare"):
        VllmTrace("t", (), None)


def test_a_declared_save_that_did_not_come_back_is_named_and_extra_names_are_dropped():
    traced = VllmTrace("t", ("next_token", "lens"), None)
    message = r"returned no 'lens': it declared \['next_token', 'lens'\] and returned \['next_token', 'next_tokens'\]"
    with pytest.raises(MissingSave, match=message):
        traced.take({"next_token": 1, "next_tokens": 2})
    assert traced.take({"next_token": 1, "lens": 2, "registered_edit": 3}) == {"next_token": 1, "lens": 2}


def test_the_chain_hands_the_next_trace_and_the_decoder_only_declared_saves():
    seen = []

    def execute(build):
        traced = build({})
        return traced, {"clean": [torch.ones(2)], "rows": [torch.ones(2)], "stray": 0}

    def patched(saves, trace_kwargs):
        seen.append(sorted(saves))
        return VllmTrace("patched", ("rows",), lambda s: (seen.append(sorted(s)) or PromptOutput({"x": s["rows"][0]}),))

    run_chain(lambda kw: VllmTrace("clean", ("clean",), None, then=patched), execute)
    assert seen == [["clean"], ["rows"]]


def test_per_invoke_values_come_as_a_list_from_several_invokes_and_bare_from_one():
    one, two = torch.zeros(1, 3), torch.ones(1, 3)
    assert per_invoke({"next_token": [one, two]}, "next_token") == [one, two]
    assert per_invoke({"next_token": one}, "next_token") == [one]
    with pytest.raises(KeyError, match="saved no 'lens'"):
        per_invoke({"next_token": one}, "lens")


def test_next_token_rows_give_one_output_per_invoke():
    outs = next_token_rows({"next_token": [torch.rand(2, 5), torch.rand(2, 5)]}, steps=2)
    assert len(outs) == 2 and outs[0].steps == 2 and outs[1].dists["next_token"].shape == (2, 5)
