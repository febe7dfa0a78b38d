"""``python -m examples.agreement``: how close each fixture's model is to
transformers' reference (the figures of docs/whole_models.md).

For every checkpoint under ``examples/fixtures/``: the largest difference
of its logits (an encoder's last hidden states) from the reference,
relative to the reference's largest magnitude, over the real (not padding)
tokens, and whether the 8 greedy tokens are equal; then the Llama fixture at
positions 10^5 against the float64 model, ours and transformers' float32.
"""

from __future__ import annotations

import pathlib

import numpy as np

import examples

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
NEW_TOKENS = 8


def _relative(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def compare(name: str) -> tuple[float, bool | None]:
    """(relative logit difference, greedy tokens equal) of one fixture (an
    encoder: None for the tokens). Llama 4's padded row is left out: see
    docs/whole_models.md."""
    ref = dict(np.load(FIXTURES / name / "reference.npz"))
    model = examples.from_pretrained(FIXTURES / name)
    ids, mask = ref["input_ids"], ref["attention_mask"]
    kind = model.config.get("model_type")
    if kind in ("bert", "modernbert") or (
        isinstance(model, examples.Decoder) and model.encoder
    ):
        types = {"token_type_ids": ref["token_type_ids"]} if kind == "bert" else {}
        hidden = model(ids, attention_mask=mask, **types)
        real = mask.astype(bool)
        return _relative(np.asarray(hidden)[real], ref["hidden"][real]), None
    if kind == "t5":
        logits = model(
            ids, decoder_input_ids=ref["decoder_input_ids"], attention_mask=mask
        )
        tokens = examples.generate(
            model, ids, max_new_tokens=NEW_TOKENS, attention_mask=mask
        )
        return _relative(logits, ref["logits"]), bool((tokens == ref["greedy"]).all())
    rows = mask.all(axis=1) if kind == "llama4_text" else np.ones(len(ids), bool)
    logits = examples.prefill(
        model, ids, attention_mask=mask, max_length=ids.shape[1] + NEW_TOKENS
    )
    real = mask.astype(bool) & rows[:, None]
    tokens = examples.generate(
        model, ids, max_new_tokens=NEW_TOKENS, attention_mask=mask
    )
    equal = bool((tokens[rows] == ref["greedy"][rows]).all())
    return _relative(np.asarray(logits)[real], ref["logits"][real]), equal


def far_positions() -> tuple[float, float]:
    """The Llama fixture at positions 10^5 + arange: (ours, transformers'
    float32) largest difference from the float64 model, relative."""
    ref = dict(np.load(FIXTURES / "llama" / "reference.npz"))
    model = examples.from_pretrained(FIXTURES / "llama")
    ours = model(ref["input_ids"][:1], positions=ref["far_positions"])
    exact = ref["far_logits_float64"]
    return _relative(ours, exact), _relative(ref["far_logits_float32"], exact)


def main() -> None:
    names = sorted(p.name for p in FIXTURES.iterdir() if (p / "config.json").is_file())
    print(f"{'fixture':<20} {'model_type':<14} {'max |diff| / max |ref|':>22}  greedy")
    worst = 0.0
    for name in names:
        kind = examples.checkpoint.read_config(FIXTURES / name)["model_type"]
        diff, equal = compare(name)
        worst = max(worst, diff)
        said = "-" if equal is None else ("equal" if equal else "DIFFERENT")
        print(f"{name:<20} {kind:<14} {diff:>22.1e}  {said}")
    print(f"largest: {worst:.1e}")
    ours, theirs = far_positions()
    print(
        f"llama at positions 10^5, against float64: ours {ours:.1e}, "
        f"transformers float32 {theirs:.1e}"
    )


if __name__ == "__main__":
    main()
