"""Mappers: fit maps between representation spaces, optax-style (pure fit/apply)."""
from lrt_jax.mappers._base import AffineState, Mapper, NotAffineError, apply_affine, bias, linear
from lrt_jax.mappers._ridge import RidgeState, lstsq, ridge
from lrt_jax.mappers._stats import (Moments, SufficientStats, accumulate_stats, init_stats,
                                    merge_stats, moments_from_stats)
