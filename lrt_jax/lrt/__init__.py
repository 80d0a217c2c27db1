"""The Linear Representation Transferability experiment: fit maps, transfer vectors, compare steering."""

from lrt_jax.lrt.activations import PairedActivations, paired_token_activations, reduced_activations
from lrt_jax.lrt.experiment import LRTConfig, fit_layer_maps, relative_shift, run_lrt_experiment
from lrt_jax.lrt.report import format_table, summary_rows, write_report
from lrt_jax.lrt.steer import contrastive_vector, generated_word_share, steered_propensity
