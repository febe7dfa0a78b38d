"""Timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable

import jax
import numpy as np


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line naming the machine, for the figures' provenance."""
    device = jax.devices()[0]
    return (
        f"{_cpu_name()} ({platform.machine()}), {os.cpu_count()} cores, "
        f"jax {jax.__version__} on {device.platform} ({device.device_kind})"
    )


def _once(fn: Callable, args) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def alternating_pairs(
    candidate: Callable, baseline: Callable, args, *, pairs: int = 15
) -> tuple[float, float, float]:
    """Median seconds of each, and the median of per-pair ratios.

    Both are compiled and run once first. Runs alternate (candidate, baseline)
    so that drifts in machine load affect both alike.
    """
    _once(candidate, args)
    _once(baseline, args)
    ours, theirs = [], []
    for _ in range(pairs):
        ours.append(_once(candidate, args))
        theirs.append(_once(baseline, args))
    ratios = np.array(ours) / np.array(theirs)
    return float(np.median(ours)), float(np.median(theirs)), float(np.median(ratios))
