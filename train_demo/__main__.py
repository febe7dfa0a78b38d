"""``python -m train_demo``: compare positional schemes on a sequence task.

Example::

    python -m train_demo --task bucket_sort \\
        --encodings none,sinusoidal,randomized_rope --steps 3000 --out runs/demo

The flags are in `train_demo.flags`; `train_demo.cli` parses them before jax
loads.
"""

from __future__ import annotations

import sys

from train_demo.cli import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # before main could handle it
        sys.exit(130)
