"""The logit lens: read a residual site as if the model stopped there.

A residual-stream value ``h [..., d_model]`` at any layer is decoded with the model's
own output path — the final norm and the unembedding (soft-capped where the model
caps its logits)::

    lens(h) = unembed(final_norm(h))        # [..., vocab], float32

so ``lens(layers.{L-1}.resid_post)`` is exactly the model's logits, and earlier layers
show which next tokens the stream already favours (nostalgebraist 2020). Sites:
``embed`` and the per-layer residual pieces (``resid_pre``, ``resid_mid``,
``resid_post``; ``attn_out``/``mlp_out`` too, read as branch contributions), any site
of width ``d_model`` other than ``final_norm``.

:func:`lens_logits` is the traceable map; :func:`logit_lens` runs the model once,
decodes the requested sites inside one compiled call and keeps the top-k tokens per
site and position (the ``[sites, batch, seq, vocab]`` logits never leave it);
:func:`plot_logit_lens` draws sites × positions with each cell's top token.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lrt_jax._inputs import check_inputs
from lrt_jax._run import run
from lrt_jax.config import ModelConfig
from lrt_jax.lm import LM
from lrt_jax.model import unembed
from lrt_jax.model.norms import Norm
from lrt_jax.outputs import atomic_path, write_records_csv
from lrt_jax.sites import UnknownSiteError, all_sites, check_sites, parse_site

__all__ = ["LensRecord", "LogitLens", "lens_logits", "logit_lens", "plot_logit_lens"]

_NOT_RESIDUAL = ("final_norm", "logits", "router_logits")


def lens_logits(config: ModelConfig, params, hidden: jax.Array) -> jax.Array:
    """``unembed(final_norm(hidden))``: float32 ``[..., vocab]`` from residual values ``[..., d_model]``."""
    normed = Norm(config).apply({"params": params["final_norm"]}, hidden)
    return unembed(config, params, normed)


@functools.partial(jax.jit, static_argnames=("config", "sites", "top_k", "reduce"))
def _top_tokens(config, params, tokens, mask, sites, top_k, reduce):
    activations = run(config, params, (tokens, mask), sites=sites, reduce=reduce).activations
    hidden = jnp.stack([activations[s] if reduce is None else activations[s][:, None] for s in sites])
    logprobs = jax.nn.log_softmax(lens_logits(config, params, hidden), axis=-1)
    top_logprobs, top_ids = jax.lax.top_k(logprobs, top_k)
    return top_ids, top_logprobs


@dataclasses.dataclass(frozen=True)
class LensRecord:
    """One of the top-k tokens of one site at one position of one batch row."""

    site: str
    row: int
    position: int
    rank: int
    token_id: int
    token: str
    logprob: float


COLUMNS = tuple(field.name for field in dataclasses.fields(LensRecord))


@dataclasses.dataclass(frozen=True)
class LogitLens:
    """Top-k tokens of the lens at each site.

    Attributes:
      sites: the decoded sites, in order.
      token_ids: int ``[n_sites, batch, seq, k]`` (``seq`` is 1 under ``reduce="last"``), best first.
      logprobs: ``[n_sites, batch, seq, k]`` their log-probabilities under the lens.
      tokens: ``[n_sites, batch, seq, k]`` the ids as tokenizer strings (the id as text without one).
      positions: int ``[batch, seq]``: the column in the input of each position; -1 for padding.
    """

    sites: tuple[str, ...]
    token_ids: np.ndarray
    logprobs: np.ndarray
    tokens: np.ndarray
    positions: np.ndarray

    def records(self) -> tuple[LensRecord, ...]:
        """Tidy rows: one per site × row × real position × rank."""
        rows = []
        for s, site in enumerate(self.sites):
            for row, column in zip(*np.nonzero(self.positions >= 0)):
                for rank in range(self.token_ids.shape[-1]):
                    rows.append(LensRecord(site, int(row), int(self.positions[row, column]), rank,
                                           int(self.token_ids[s, row, column, rank]),
                                           str(self.tokens[s, row, column, rank]),
                                           float(self.logprobs[s, row, column, rank])))
        return tuple(rows)

    def to_csv(self, path) -> None:
        """A header line and one line per record (see :class:`LensRecord`), written atomically."""
        write_records_csv(path, self.records(), COLUMNS)


def _check_lens_sites(lm: LM, sites) -> tuple[str, ...]:
    sites = ("embed", *all_sites(lm.config, "resid_post")) if sites is None else check_sites(lm.config, sites)
    for site in sites:
        if parse_site(site)[1] in _NOT_RESIDUAL:
            raise UnknownSiteError(f"The logit lens decodes residual sites of width d_model; {site!r} is not one "
                                   "(final_norm is already normed, logits already decoded).")
    return sites


def _token_strings(lm: LM, ids: np.ndarray) -> np.ndarray:
    flat = ids.reshape(-1).tolist()
    strings = [str(i) for i in flat] if lm.tokenizer is None else lm.tokenizer.convert_ids_to_tokens(flat)
    return np.asarray(strings, dtype=object).reshape(ids.shape)


def logit_lens(lm: LM, tokens, sites: Sequence[str] | None = None, *, attention_mask=None, top_k: int = 5,
               reduce: str | None = None) -> LogitLens:
    """The top-``top_k`` next tokens that each site's residual value predicts through the final norm and head.

    Args:
      lm: the model.
      tokens: int ``[batch, seq]`` or a :class:`~lrt_jax.text.Batch`.
      sites: site names (``embed``, ``layers.{i}.resid_pre`` …); default ``embed`` and every
        ``layers.{i}.resid_post``.
      attention_mask: optional ``[batch, seq]`` (1 = real token).
      top_k: how many tokens to keep per site and position.
      reduce: ``None`` for every position, ``"last"`` for each row's last real token only.

    Returns:
      :class:`LogitLens`. Its last site ``layers.{L-1}.resid_post`` reproduces the model's logits.

    Example::

        lens = logit_lens(lm, encode(lm, ["the soup was"]), reduce="last")
        lens.tokens[:, 0, 0, 0]        # the top token after each layer
        plot_logit_lens(lens, "lens.png")
    """
    sites = _check_lens_sites(lm, sites)
    if not isinstance(top_k, int) or not 1 <= top_k <= lm.config.vocab_size:
        raise ValueError(f"top_k must be an int in [1, {lm.config.vocab_size}] (the vocabulary size); got {top_k!r}.")
    if reduce not in (None, "last"):
        raise ValueError(f"reduce must be None or 'last'; got {reduce!r}.")
    tokens, mask = check_inputs(lm.config, tokens, attention_mask)
    widths = jax.eval_shape(functools.partial(run, lm.config, sites=sites), lm.params, (tokens, mask)).activations
    wrong = [site for site in sites if widths[site].shape[-1] != lm.config.d_model or widths[site].ndim != 3]
    if wrong:
        raise UnknownSiteError(f"The logit lens decodes [batch, seq, d_model] sites; {wrong} are not.")
    ids, logprobs = (np.asarray(a) for a in _top_tokens(lm.config, lm.params, tokens, mask, sites, top_k, reduce))
    mask = np.asarray(mask)
    columns = np.where(mask, np.arange(mask.shape[1])[None, :], -1)
    if reduce == "last":
        columns = (mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1))[:, None]
    return LogitLens(sites, ids, logprobs, _token_strings(lm, ids), columns)


def plot_logit_lens(lens: LogitLens, path=None, *, row: int = 0, axes=None):
    """Sites × positions of one batch row: each cell's top token, coloured by its probability.

    Args:
      lens: from :func:`logit_lens`.
      path: image file to write (format from the suffix), or ``None``.
      row: which batch row to draw.
      axes: a matplotlib ``Axes`` to draw into; default a new figure.

    Returns:
      the matplotlib figure.
    """
    if not 0 <= row < lens.token_ids.shape[1]:
        raise ValueError(f"row must be in [0, {lens.token_ids.shape[1]}); got {row}.")
    real = np.nonzero(lens.positions[row] >= 0)[0]
    probability = np.exp(lens.logprobs[:, row, real, 0])
    if axes is None:
        figure = Figure(figsize=(max(4.0, 0.9 * len(real) + 2.5), max(2.5, 0.35 * len(lens.sites) + 1.5)))
        FigureCanvasAgg(figure)  # a non-interactive canvas; no pyplot global state
        axes = figure.add_subplot()
    figure = axes.figure
    image = axes.imshow(probability, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for i in range(len(lens.sites)):
        for j, column in enumerate(real):
            axes.text(j, i, str(lens.tokens[i, row, column, 0]), ha="center", va="center", fontsize=8,
                      color="white" if probability[i, j] > 0.6 else "black")
    axes.set_xticks(range(len(real)), [str(int(lens.positions[row, c])) for c in real])
    axes.set_yticks(range(len(lens.sites)), list(lens.sites))
    axes.set_xlabel("position")
    axes.set_title("logit lens: top token per site (colour: its probability)")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    if path is not None:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format=Path(path).suffix.lstrip(".") or None)
    return figure
