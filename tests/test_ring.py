"""Context parallelism: the load-balancing order of the sequence over shards."""

import numpy as np
import pytest

import flax_posenc as fp


def _llama3_order(length, shards):
    """Llama 3's rule, written plainly: shard i holds chunks i and 2n - 1 - i."""
    size = length // (2 * shards)
    chunk = [list(range(c * size, (c + 1) * size)) for c in range(2 * shards)]
    return [t for i in range(shards) for t in chunk[i] + chunk[2 * shards - 1 - i]]


@pytest.mark.parametrize(("length", "shards"), [(8, 1), (8, 2), (24, 3), (64, 4)])
def test_order_is_llama3s_and_argsort_inverts_it(length, shards):
    order = np.asarray(fp.load_balanced_order(length, shards))
    assert order.dtype == np.int32
    assert order.tolist() == _llama3_order(length, shards)
    assert np.argsort(order)[order].tolist() == list(range(length))


@pytest.mark.parametrize("shards", [2, 4, 8])
def test_every_shard_gets_the_same_causal_work(shards):
    length = 16 * shards
    order = np.asarray(fp.load_balanced_order(length, shards))
    # A query at position p attends to p + 1 keys under a causal mask.
    work = [int((part + 1).sum()) for part in np.split(order, shards)]
    assert len(set(work)) == 1, work
    plain = [int((part + 1).sum()) for part in np.split(np.arange(length), shards)]
    assert len(set(plain)) == shards  # what the reorder fixes


def test_masks_from_permuted_positions_are_the_permuted_mask():
    positions = np.arange(24)
    segments = np.repeat([1, 2, 2], 8)
    order = np.asarray(fp.load_balanced_order(24, 3))
    mask = np.asarray(
        fp.attention_mask(
            positions, positions, causal=True, q_segments=segments, k_segments=segments
        )
    )
    permuted = np.asarray(
        fp.attention_mask(
            positions[order],
            positions[order],
            causal=True,
            q_segments=segments[order],
            k_segments=segments[order],
        )
    )
    np.testing.assert_array_equal(permuted, mask[..., order, :][..., order])


@pytest.mark.parametrize(
    ("length", "shards", "error", "match"),
    [
        (10, 2, ValueError, r"multiple of 2 \* num_shards = 4"),
        (8, 0, ValueError, r"num_shards must be >= 1"),
        (0, 1, ValueError, r"length must be >= 1"),
        (8, True, TypeError, r"num_shards must be an int"),
        (8.0, 2, TypeError, r"length must be an int"),
    ],
)
def test_bad_sizes(length, shards, error, match):
    with pytest.raises(error, match=match):
        fp.load_balanced_order(length, shards)
