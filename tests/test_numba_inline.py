"""nbnet.numba_inline: Numba's inliner with one copy of the callee's scope per copy of its IR
emits the same machine code as Numba's own, and is in place."""

import copy
import re

import numpy as np
from numba import njit
from numba.core import inline_closurecall, ir
from numba.core.compiler import run_frontend

from nbnet import numba_inline


def fresh_caller():
    """A new function (so compiled anew) that inlines a callee of several blocks twice."""

    @njit(inline="always")
    def scaled_sum(x, c):
        total = x[0] * 0
        for i in range(x.shape[0]):
            if x[i] > 0:
                total += c * x[i]
            else:
                total -= x[i]
        return total

    @njit(fastmath={"reassoc"})
    def caller(X):
        out = np.empty(X.shape[0], X.dtype)
        for s in range(X.shape[0]):
            out[s] = scaled_sum(X[s], 2.0) + scaled_sum(X[s], 3.0)
        return out

    return caller


def machine_code(function):
    """The assembly of `function`'s one compiled signature, with the per-function number in its
    symbols (Numba's `v12` in `B3v12`) taken out."""
    assert np.allclose(function(np.array([[1.0, -2.0, 3.0]])), [2.0 + 2.0 + 6.0 + 3.0 + 2.0 + 9.0])
    (result,) = function.overloads.values()
    return re.sub(r"B\d+v\d+", "B_v_", result.library.get_asm_str())


def test_the_machine_code_is_numbas_own(monkeypatch):
    assert numba_inline.installed()
    shared = machine_code(fresh_caller())
    monkeypatch.setattr(inline_closurecall, "copy", copy)
    monkeypatch.setattr(inline_closurecall.InlineWorker, "inline_ir",
                        inline_closurecall.InlineWorker.inline_ir.__wrapped__)
    assert not numba_inline.installed()
    numbas = machine_code(fresh_caller())
    assert "scaled_sum" not in numbas  # inlined: no call left
    assert shared == numbas


def test_blocks_copied_in_one_inlining_share_one_copy_of_their_scope():
    def callee(x):
        total = 0.0
        for i in range(x.shape[0]):
            total += x[i]
        return total

    function_ir = run_frontend(callee)
    blocks = list(function_ir.blocks.values())
    assert len(blocks) > 2 and all(block.scope is blocks[0].scope for block in blocks)
    copies = numba_inline.SharedScopeCopies(ir.Block)
    assert copies.deepcopy(blocks[0]).scope is not copies.deepcopy(blocks[1]).scope  # outside inline_ir: as copy.deepcopy
    copies.scopes = {}
    copied = [copies.deepcopy(block) for block in blocks]
    scope = copied[0].scope
    assert scope is not blocks[0].scope and all(block.scope is scope for block in copied)
    assert sorted(scope.localvars._con) == sorted(blocks[0].scope.localvars._con)
    for block, original in zip(copied, blocks):
        assert block is not original and [str(stmt) for stmt in block.body] == [str(stmt) for stmt in original.body]
        assert all(var.scope is scope for stmt in block.body for var in stmt.list_vars())
