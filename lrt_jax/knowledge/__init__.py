"""Knowledge transfer between models: translate-and-substitute, latent semantic alignment,
low-rank trajectory distillation."""
