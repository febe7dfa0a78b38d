"""Set-up of every test session (tests/ and the doctests of flax_posenc/).

The suite's time goes into compiling a few thousand small XLA programs, not
into running them; at XLA's backend optimization level 0 they compile about a
third faster on the CPU, which is most of the difference between a 5-minute
``make test`` and a 4-minute one. What is tested does not change: the same
programs, the same tolerances; the benchmarks, the demo and users' programs
compile at XLA's default. A level already set in ``XLA_FLAGS`` is kept, so

    XLA_FLAGS=--xla_backend_optimization_level=2 make test

runs the suite as XLA compiles by default. LLVM's expensive passes are off
too (``--xla_llvm_disable_expensive_passes``, kept if set: another 8% off
the compile of the examples' decoders); without fast math LLVM does not
reorder floating-point operations, so the numbers are the same. XLA reads
the flags when its CPU backend starts, after this file is imported. Child
processes that tests start with fake devices get these flags too
(``tests/children.py``).
"""

import os

_LEVEL = "--xla_backend_optimization_level"
_LLVM = "--xla_llvm_disable_expensive_passes"
_flags = os.environ.get("XLA_FLAGS", "")
if _LEVEL not in _flags:
    _flags = f"{_flags} {_LEVEL}=0"
if _LLVM not in _flags:
    _flags = f"{_flags} {_LLVM}=true"
os.environ["XLA_FLAGS"] = _flags.strip()
