"""Scoring task items under steering, in one compiled call per batch for a whole α × vector grid.

The scorers take a model, task records from :mod:`lrt_jax.tasks`, a
:class:`~lrt_jax.tasks.PromptFormat` and optionally steering — ``vectors`` ``{name:
SteeringVector or [d_model] array}`` added as ``Add(site, vector, α)`` for every α of
``alphas`` — and return a tidy :class:`~lrt_jax.results.ResultsTable`, one row per
item × α × vector (``vectors=None``: one unsteered row per item, vector ``"unsteered"``):

============================== =================================== ==========================
scorer                         items                               metrics
============================== =================================== ==========================
:func:`score_propensity`       CAA A/B, persona yes/no             ``logit_diff``, ``p_matching``
:func:`score_multiple_choice`  TruthfulQA MC1 / MC2                ``mc1``, ``mc2``
:func:`score_gsm8k`            GSM8K                               ``exact_match``
:func:`score_steering_cost`    plain texts                         ``kl_next_token``, ``nll``, ``perplexity``
============================== =================================== ==========================

The log-probability scorers vmap over vectors (outer axis) and α (inner axis) in one
jitted function per batch shape, whose jittable cores are public too:
:func:`steered_answer_logprobs` ``-> [k, a, batch, n_answers]`` and
:func:`steered_continuation_logprobs` ``-> [k, a, rows]``. GSM8K loops over settings
(generation differs per setting).

:func:`lrt_comparison` turns one table of native, transferred and control vectors into
the LRT paper's per-α Pearson / MSE table plus steerability slopes;
:func:`plot_lrt_comparison` draws propensity against α with the controls dashed;
:func:`plot_effect_vs_cost` draws a task's effect against the cost of steering, α labelled.

Scores with intervals (:mod:`._geometry`): :func:`bootstrap_interval` and its parts
(:func:`bootstrap_indices`, :func:`bootstrap_statistic` — a ``vmap`` over resample index
arrays —, :func:`percentile_interval`), the per-row mutual k-NN overlap and the relative
shift; :func:`substituted_next_token_kl` scores a map by the target's next-token KL when
a site is replaced by mapped states.

Example::

    items = lrt_jax.tasks.load_caa_ab("caa/test/sycophancy/test_dataset_ab.json")
    table = score_propensity(lm, items, fmt=PromptFormat("plain"), site="layers.12.resid_post",
                             vectors={"native": native, "transferred": mapped, "random": control},
                             alphas=np.linspace(-8, 8, 16))
    table.to_csv("scores.csv")
    print(format_lrt_comparison(lrt_comparison(table)))
"""

from lrt_jax.evaluation._comparison import ACROSS_ITEMS, format_lrt_comparison, lrt_comparison, plot_lrt_comparison
from lrt_jax.evaluation._cost import COST_METRICS, score_steering_cost, steered_next_token_cost
from lrt_jax.evaluation._cost_plot import plot_effect_vs_cost
from lrt_jax.evaluation._geometry import (
    Interval, bootstrap_indices, bootstrap_interval, bootstrap_statistic, mean_shift_ratio, mutual_knn_per_row,
    percentile_interval)
from lrt_jax.evaluation._gsm8k import is_exact_match, score_gsm8k
from lrt_jax.evaluation._multiple_choice import mc_scores, score_multiple_choice, steered_continuation_logprobs
from lrt_jax.evaluation._propensity import (
    PROPENSITY_METRICS, propensity_from_logprobs, score_propensity, steered_answer_logprobs)
from lrt_jax.evaluation._steering_grid import UNSTEERED
from lrt_jax.evaluation._substitution import substituted_next_token_kl
from lrt_jax.model import unembed

__all__ = [
    "ACROSS_ITEMS",
    "COST_METRICS",
    "Interval",
    "bootstrap_indices",
    "bootstrap_interval",
    "bootstrap_statistic",
    "format_lrt_comparison",
    "is_exact_match",
    "lrt_comparison",
    "mc_scores",
    "mean_shift_ratio",
    "mutual_knn_per_row",
    "percentile_interval",
    "plot_effect_vs_cost",
    "plot_lrt_comparison",
    "propensity_from_logprobs",
    "PROPENSITY_METRICS",
    "score_gsm8k",
    "score_multiple_choice",
    "score_propensity",
    "score_steering_cost",
    "steered_answer_logprobs",
    "steered_continuation_logprobs",
    "steered_next_token_cost",
    "substituted_next_token_kl",
    "unembed",
    "UNSTEERED",
]
