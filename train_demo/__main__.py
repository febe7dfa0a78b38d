"""Entry point of ``python -m train_demo`` (``make demo``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Runs the demo; until the training demo lands it says so and succeeds."""
    del argv
    print(
        "train_demo: the Bucket Sort training demo is not implemented yet.\n"
        "The library itself is ready: see README.md and `make test`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
