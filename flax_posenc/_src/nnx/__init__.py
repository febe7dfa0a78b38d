"""The Flax NNX twins (re-exported by `flax_posenc.nnx`)."""
