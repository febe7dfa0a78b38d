"""The Flax linen modules (re-exported by `flax_posenc.linen`)."""
