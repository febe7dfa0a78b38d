"""The demo's tasks and encodings by name: plain data, no jax.

The command line lists them (``python -m train_demo --help``) without loading
jax, flax or orbax; `train_demo.tasks` and `train_demo.model` build on them.
"""

from __future__ import annotations

# Each task and the number of symbols its inputs are drawn from.
TASK_SYMBOLS = {
    "bucket_sort": 5,
    "reverse_string": 2,
}

# What each encoding name means: where positions enter the model, and whether
# they are drawn at random (Ruoss et al. 2023) instead of 0..n-1.
ENCODINGS = {
    "none": ("none", False),
    "sinusoidal": ("sinusoidal", False),
    "learned": ("learned", False),
    "rope": ("rope", False),
    "alibi": ("alibi", False),
    "relative": ("relative", False),
    "randomized_sinusoidal": ("sinusoidal", True),
    "randomized_rope": ("rope", True),
    "randomized_learned": ("learned", True),
}
