"""Rotary position embeddings (RoPE), one module per job.

- `scalings`: the typed scalings, each with its frequency function, and the
  registry `scalings.SCALINGS` (``rope_type`` -> class).
- `hf`: the Hugging Face rope dict vocabulary, parsed once into a `hf.Plan`.
- `families`: what transformers does per ``model_type``.
- `config`: `RopeConfig` and `rope_config_from_hf`.
- `apply`: `rope_frequencies`, `apply_rope`, the compiled rotation, axial RoPE.
"""
