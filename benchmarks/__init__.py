"""Scripts that time and measure flax_posenc and the demo against the baselines
users would pick; each runs as ``python -m benchmarks.NAME`` from the
repository root."""
