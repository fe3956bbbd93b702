"""Every vLLM cell saves exactly the names it declares (read off its source: no engine needed).

nnsight hands a vLLM trace's saves back by the name each was bound to in the block, and a linter
sees those bindings as unused (F841): an auto-fix, or a rename, would break a cell only on the
GPU. This reads each cell's function and checks that the names it binds with ``.save()`` and the
names its ``VllmTrace`` declares are the same set.
"""

import ast
import inspect
import textwrap

import pytest

from nnbench.cells.registry import CELLS
from nnbench.micro.probes import vllm_probe

VLLM_BACKENDS = ("vllm_sync", "vllm_async", "vllm_serve")


def _saved_and_declared(fn) -> tuple[set[str], set[str]]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    saved, declared = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_save(node.value):  # name = ... .save()
            saved |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.Expr) and _is_save(node.value) and isinstance(node.value.func.value, ast.Name):
            saved.add(node.value.func.value.id)  # name.save()
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "VllmTrace":
            names = node.args[1] if len(node.args) > 1 else None
            assert isinstance(names, ast.Tuple), f"{fn.__name__}: VllmTrace's second argument must be a tuple of names"
            declared |= {ast.literal_eval(e) for e in names.elts}
    return saved, declared


def _is_save(value: ast.expr) -> bool:
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "save"


VLLM_CELLS = sorted({CELLS.get(k).fn for k in CELLS if k.backend in VLLM_BACKENDS} | {vllm_probe},
                    key=lambda fn: fn.__qualname__)


@pytest.mark.parametrize("fn", VLLM_CELLS, ids=lambda fn: fn.__name__)
def test_each_vllm_cell_declares_exactly_the_names_it_saves(fn):
    saved, declared = _saved_and_declared(fn)
    assert saved, f"{fn.__name__} saves nothing"
    assert saved == declared, f"{fn.__name__}: saves {sorted(saved)} but declares {sorted(declared)}"


def test_the_check_sees_a_save_the_declaration_lacks():
    def cell(model, tracer):  # the fault: a save renamed without its declaration
        with model.trace() as tracer:
            next_tokens = model.logits.save()  # noqa: F841 (parsed, never run)
        return VllmTrace(tracer, ("next_token",), None)  # noqa: F821

    assert _saved_and_declared(cell) == ({"next_tokens"}, {"next_token"})


def test_there_are_vllm_cells_to_check():
    assert len(VLLM_CELLS) >= 30
