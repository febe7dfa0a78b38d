"""The command line's flags and its one message that needs no jax.

``python -m train_demo --help`` and a misspelt flag answer at once: this
module imports nothing heavier than `argparse` and `train_demo.names`.
`train_demo.cli` parses with it; `train_demo.report` compares a run's
settings with its defaults.
"""

from __future__ import annotations

import argparse

from train_demo import names

DEFAULT_ENCODINGS = "none,sinusoidal,alibi,randomized_rope"

# Printed when a Ctrl-C comes before the run has an output folder.
NOTHING_SAVED = "interrupted: nothing was saved."


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Ends each flag's help with its default, unless the help gives it in
    words (``(default: ...)``); on/off flags (``--resume``) are off unless given."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default:" in (action.help or "") or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train_demo",
        description="Train a small encoder with each positional scheme and "
        "compare accuracy in and beyond the training lengths.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "--task",
        choices=tuple(names.TASK_SYMBOLS),
        default="bucket_sort",
        help="the sequence task to learn",
    )
    p.add_argument(
        "--encodings",
        default=DEFAULT_ENCODINGS,
        help=f"comma-separated, from {', '.join(names.ENCODINGS)}",
    )
    p.add_argument("--steps", type=int, default=500, help="training steps")
    p.add_argument("--seeds", type=int, default=1, help="seeds trained together (vmap)")
    p.add_argument(
        "--train-length",
        type=int,
        default=20,
        help="training examples have lengths 1..this",
    )
    p.add_argument(
        "--test-length",
        type=int,
        default=60,
        help="accuracy is measured at every length 1..this",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, help="examples per training step"
    )
    p.add_argument(
        "--learning-rate", type=float, default=3e-3, help="peak learning rate"
    )
    p.add_argument(
        "--schedule",
        choices=("constant", "cosine"),
        default="cosine",
        help="after the warm-up: a constant learning rate, or a cosine decay to 0",
    )
    p.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="steps of linear warm-up from 0 before either schedule "
        "(default: a tenth of --steps)",
    )
    p.add_argument("--layers", type=int, default=3, help="encoder blocks")
    p.add_argument("--features", type=int, default=64, help="model width")
    p.add_argument("--heads", type=int, default=4, help="attention heads")
    p.add_argument(
        "--norm", choices=("layer", "rms"), default="layer", help="LayerNorm or RMSNorm"
    )
    p.add_argument(
        "--norm-position",
        choices=("post", "pre"),
        default="post",
        help="normalize after each residual sum (post-LN) or before each block",
    )
    p.add_argument(
        "--combine",
        choices=("add", "concat"),
        default="add",
        help="sinusoidal and learned positions added to the token embeddings, "
        "or concatenated (half the features each); other schemes ignore it",
    )
    p.add_argument(
        "--api",
        choices=("linen", "nnx"),
        default="linen",
        help="build the encoder from the linen modules or their NNX twins",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=500,
        help="steps between checkpoints (and one at the end)",
    )
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    return p
