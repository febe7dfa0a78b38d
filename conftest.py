"""Set-up of every test session (tests/ and the doctests of flax_posenc/).

The suite's time goes into compiling a few thousand small XLA programs, not
into running them; at XLA's backend optimization level 0 they compile about a
third faster on the CPU, which is most of the difference between a 5-minute
``make test`` and a 4-minute one. What is tested does not change: the same
programs, the same tolerances; the benchmarks, the demo and users' programs
compile at XLA's default. A level already set in ``XLA_FLAGS`` is kept, so

    XLA_FLAGS=--xla_backend_optimization_level=2 make test

runs the suite as XLA compiles by default. XLA reads the flags when its CPU
backend starts, after this file is imported. Child processes that tests start
with an ``XLA_FLAGS`` of their own (fake devices) compile at the default.
"""

import os

_LEVEL = "--xla_backend_optimization_level"
_flags = os.environ.get("XLA_FLAGS", "")
if _LEVEL not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} {_LEVEL}=0".strip()
