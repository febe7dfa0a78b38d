"""The implementation of flax_posenc: nothing in here is public.

The public names are re-exported by `flax_posenc`, `flax_posenc.linen` and
`flax_posenc.nnx`; a module here may be renamed or split without notice.
"""
