"""Activation patching: which site, layer and position (or head) carries what tells two inputs apart.

Run a *clean* input (e.g. a positive review) and a *corrupt* one that differs in the
attribute of interest (the same review, negative) and measure the clean behaviour
at the last token. Then rerun the corrupt input with the value of one site at one
unit copied from the clean run; if that alone restores the clean behaviour, that
unit carries the difference. Doing so for every cell of a grid localises it:

========== =========================================== ===========================
``over``   one cell                                    site shape
========== =========================================== ===========================
position   layer ``l``, sequence slot ``j``            ``[batch, seq, d]`` (``resid_pre``, ``attn_out``, …)
head       layer ``l``, head ``h`` (all positions)     ``[batch, seq, heads, head_dim]`` (``attn.z``)
neuron     layer ``l``, component ``k`` (all positions) ``[batch, seq, width]``
========== =========================================== ===========================

Metrics, at each row's last real token: ``"kl"`` — KL(clean ‖ patched) of the
next-token distribution; ``"logit_diff"`` — ``logit[correct] − logit[wrong]`` of two
answer tokens. The normalised effect ``(patched − corrupt) / (clean − corrupt)`` is 0
for a patch that changes nothing and 1 for one that restores the clean run.

The whole grid is one compiled call: a patch is an intervention of arrays
(:class:`PatchFromClean`) installed at every layer's site and switched on by a
one-hot over layers, so ``jax.vmap`` covers layers and units alike
(:func:`patching_grid`, traceable; :func:`activation_patching`, checked). Path
patching is out of scope.

Example::

    clean, corrupt = encode(lm, ["the soup was good"]), encode(lm, ["the soup was bad"])
    result = patching.activation_patching(lm, clean, corrupt, "resid_pre", answers=(good, bad))
    patching.plot_patching_heatmap(result, "patching.png")
"""

from lrt_jax.patching._activation_patching import activation_patching
from lrt_jax.patching._grid import PatchFromClean, PatchingGrid, next_token_kl, patching_grid
from lrt_jax.patching._result import PatchingRecord, PatchingResult, plot_patching_heatmap

__all__ = [
    "activation_patching",
    "next_token_kl",
    "PatchFromClean",
    "PatchingGrid",
    "PatchingRecord",
    "PatchingResult",
    "patching_grid",
    "plot_patching_heatmap",
]
