"""Site taps: identity modules that mark the named activation sites of the decoder.

A ``Tap`` returns its input unchanged. Its only job is to be a module call that
``flax.linen.intercept_methods`` can see: :mod:`lrt_jax._run` installs an
interceptor that reads (capture) or rewrites (interventions) the value passing
through each tap, identified by its canonical ``site`` name (see :mod:`lrt_jax.sites`).
With no interceptor installed a tap costs nothing: it is erased at trace time.
"""

from __future__ import annotations

import flax.linen as nn
import jax


class Tap(nn.Module):
    """Identity at a named site, e.g. ``Tap("layers.3.resid_post")``."""

    site: str

    def __call__(self, x: jax.Array) -> jax.Array:
        return x
