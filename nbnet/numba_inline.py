"""Numba's inliner without its copies of the callee's scope in every block (share_callee_scope),
installed before anything is compiled: nbnet.config calls it. This module imports nothing of
nbnet's, so that config can.

nbnet inlines small functions into its kernels (`inline="always"`: the activations, the
targets, nbnet.narrow's row passes), and each inlining copies the callee's Numba IR. Numba
(0.59-0.68 at least; its issues 8989 and 9204) deep-copies the IR one block at a time, and
each block refers to the function's scope, which lists every variable of the function: so the
scope, and every variable in it, is copied once per block. For a loop nest of 32 blocks and
815 variables that is 26,000 variable copies, 40 ms per inlining; sharing one copy of the scope
among the blocks makes it 9 ms. Numba then asks, for each block, whether its scope is one it
has met, by comparing the scopes' variables one by one; with one shared copy the first
comparison (by identity) answers. Over the digits' default run, compiled in one process, this
is 0.4-0.5 s of 6.5 s of compiling.

The machine code is the same (tests/test_numba_inline.py compares it): a fresh function's
blocks share one scope to begin with, and the inliner renames the callee's variables into the
caller's scope and points every block at the caller's scope whichever copy they had.
"""

import copy


class SharedScopeCopies:
    """Stands in for the `copy` module inside numba.core.inline_closurecall, whose one use of it
    is `copy.deepcopy(block)` for each block of the IR being inlined: while `scopes` is a dict
    (one InlineWorker.inline_ir call), the blocks that share a scope share one copy of it."""

    def __init__(self, block_type):
        self.block_type = block_type
        self.scopes = None  # {id(scope): (scope, its copy)} during one inline_ir call

    def deepcopy(self, x, memo=None):
        if self.scopes is None or memo is not None or not isinstance(x, self.block_type):
            return copy.deepcopy(x, memo)
        scope = x.scope
        if id(scope) not in self.scopes:  # (the scope is kept alive with its id, so the id stays its own)
            self.scopes[id(scope)] = (scope, copy.deepcopy(scope))
        return copy.deepcopy(x, {id(scope): self.scopes[id(scope)][1]})

    def __getattr__(self, name):  # anything else of the copy module, as it is
        return getattr(copy, name)


def share_callee_scope():
    """Make Numba's InlineWorker.inline_ir copy the callee's scope once per copy of its IR, not
    once per block (the module's docstring). Left out, and Numba inlines as it does, when its
    internals differ from what this expects."""
    try:
        from numba.core import inline_closurecall, ir
    except ImportError:
        return
    worker = getattr(inline_closurecall, "InlineWorker", None)
    inline_ir = getattr(worker, "inline_ir", None)
    if inline_ir is None or getattr(inline_ir, "nbnet_shared_scope", False):
        return
    if getattr(inline_closurecall, "copy", None) is not copy or not isinstance(getattr(ir, "Block", None), type):
        return
    copies = SharedScopeCopies(ir.Block)

    def shared_scope_inline_ir(self, *args, **kwargs):
        outer, copies.scopes = copies.scopes, {}
        try:
            return inline_ir(self, *args, **kwargs)
        finally:
            copies.scopes = outer

    shared_scope_inline_ir.nbnet_shared_scope = True
    shared_scope_inline_ir.__wrapped__ = inline_ir
    shared_scope_inline_ir.__doc__ = inline_ir.__doc__
    inline_closurecall.copy = copies
    worker.inline_ir = shared_scope_inline_ir


def installed():
    """True when share_callee_scope is in place."""
    from numba.core import inline_closurecall

    return getattr(inline_closurecall.InlineWorker.inline_ir, "nbnet_shared_scope", False)
