"""``python -m examples --checkpoint DIR --prompt-ids 1,2,3``: greedy tokens
and tokens per second."""

from __future__ import annotations

import argparse
import time

import numpy as np

from examples import from_pretrained, generate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder")
    parser.add_argument("--prompt-ids", required=True, help="comma-separated ids")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    ids = np.array([[int(t) for t in args.prompt_ids.split(",")]], np.int32)
    model = from_pretrained(args.checkpoint)
    # A first run compiles the prefill and the step for these shapes.
    generate(model, ids, max_new_tokens=args.max_new_tokens)
    start = time.perf_counter()
    tokens = generate(
        model,
        ids,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    print("tokens:", ",".join(str(t) for t in tokens[0]))
    print(f"{tokens.shape[1] / seconds:.1f} tokens/s (prefill and decode)")


if __name__ == "__main__":
    main()
