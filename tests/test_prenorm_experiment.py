"""The experiment of docs/concepts/normalization.md, on a small configuration.

Gradient norms of each layer's MLP kernel ``W2`` at initialization, post-LN
against pre-LN (Xiong et al. 2020, https://arxiv.org/abs/2002.04745), computed
by the function of docs/figures.py that draws docs/figures/prenorm_gradients.png.
The page's claims are asserted on the mean over a few seeds.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures.py"
SMALL = {"seeds": 4, "features": 32, "heads": 2, "batch": 4, "seq": 8, "vocab": 16}
DEPTHS = [3, 6]


@pytest.fixture(scope="module")
def figures():
    name = "_docs_figures"
    spec = importlib.util.spec_from_file_location(name, FIGURES)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # Flax modules defined there look it up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def results(figures):
    """``{"post" | "pre": [seed, depth, layer] gradient norms}``."""
    return {
        position: figures.prenorm_gradient_norms(position, DEPTHS, **SMALL)
        for position in ("post", "pre")
    }


@pytest.fixture(scope="module")
def norms(results):
    """Each layer's gradient norm in the 6-layer encoder, mean over seeds."""
    return {position: values[:, -1].mean(0) for position, values in results.items()}


@pytest.mark.parametrize("position", ["post", "pre"])
def test_shape_and_depth_truncation(results, position):
    values = results[position]
    assert values.shape == (SMALL["seeds"], len(DEPTHS), max(DEPTHS))
    # The 3-layer encoder has no layers 4 to 6: no gradient reaches them.
    np.testing.assert_array_equal(values[:, 0, 3:], 0.0)
    assert np.all(values[:, 0, :3] > 0.0)
    assert np.all(values[:, 1] > 0.0)


def test_post_ln_last_layer_gradient_is_larger_than_pre_ln(norms):
    assert norms["post"][-1] > 1.5 * norms["pre"][-1], norms


def test_pre_ln_gradient_shrinks_towards_the_output(norms):
    assert norms["pre"][-1] < 0.75 * norms["pre"][0], norms
    assert np.all(np.diff(norms["pre"]) < 0.0), norms


def test_post_ln_gradient_does_not_shrink_towards_the_output(norms):
    # Flat at this size: no decay, and no large growth either.
    assert 0.8 < norms["post"][-1] / norms["post"][0] < 2.0, norms
