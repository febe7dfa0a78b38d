"""examples/ beyond the decoders: T5, the encoders, the linen decoder and
the command line (loading onto a mesh is tested in the 4-device child of
tests/nnx/test_sharding.py). The fixtures and tolerance are those of
tests/test_examples.py, whose helpers this reads; a module of its own so
that the two run on different workers."""

import contextlib
import io

import numpy as np
import pytest

import examples
from examples import __main__ as cli
from examples import linen_models
from tests.test_examples import FIXTURES, _reference


@pytest.mark.parametrize("name", ["t5", "flan_t5"])
def test_t5_logits_and_greedy_tokens_equal_transformers(name):
    """T5 v1.0 (ReLU, scaled tied head) and v1.1 / Flan-T5 (gated GeLU): the
    relative bias, cross-attention over a padded encoder batch, the
    decoder's cache."""
    ref = _reference(name)
    model = examples.from_pretrained(FIXTURES / name)
    ids, mask = ref["input_ids"], ref["attention_mask"]
    logits = model(ids, decoder_input_ids=ref["decoder_input_ids"], attention_mask=mask)
    want = ref["logits"]
    np.testing.assert_allclose(
        np.asarray(logits), want, atol=1e-4 * np.abs(want).max(), rtol=0
    )
    tokens = examples.generate(model, ids, max_new_tokens=8, attention_mask=mask)
    np.testing.assert_array_equal(tokens, ref["greedy"])


@pytest.mark.parametrize("name", ["bert", "modernbert", "embeddinggemma"])
def test_encoder_last_hidden_states_equal_transformers(name):
    """BERT: learned positions, token types, post-LN, biases. ModernBERT:
    global and bidirectional-window layers with their own bases, GeGLU, no
    norm before the first attention. EmbeddingGemma: Gemma 3 with every
    layer bidirectional (use_bidirectional_attention), the sliding ones
    seeing |q - k| <= sliding_window // 2, a base model's checkpoint (no LM
    head). A padded batch (the padding tokens' own states are not compared:
    here they attend nothing)."""
    ref = _reference(name)
    model = examples.from_pretrained(FIXTURES / name)
    types = {"token_type_ids": ref["token_type_ids"]} if name == "bert" else {}
    hidden = model(ref["input_ids"], attention_mask=ref["attention_mask"], **types)
    real = ref["attention_mask"].astype(bool)
    want = ref["hidden"][real]
    np.testing.assert_allclose(
        np.asarray(hidden)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )


def test_an_encoder_has_no_continuation():
    model = examples.from_pretrained(FIXTURES / "embeddinggemma")
    assert model.lm_head is None
    with pytest.raises(ValueError, match="is an encoder"):
        examples.generate(model, np.array([[5, 6]]), max_new_tokens=1)


@pytest.mark.parametrize("name", ["llama", "gemma2", "phi3"])
def test_the_linen_decoder_gives_the_same_logits(name):
    """examples.linen_models: the linen twins under the NNX model's names,
    its loaded weights as the params (Llama: pre-norm, tied; Gemma 2:
    sandwich norms with 1 + w, soft caps; Phi-3: fused tensors split)."""
    ref = _reference(name)
    model, params = linen_models.from_pretrained(FIXTURES / name)
    ids, mask = ref["input_ids"], ref["attention_mask"]
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    logits = model.apply({"params": params}, ids, positions=positions, segments=mask)
    real = mask.astype(bool)
    want = ref["logits"][real]
    np.testing.assert_allclose(
        np.asarray(logits)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )


def test_the_linen_decoder_refuses_what_it_does_not_build():
    # Kimi K2: read as DeepSeek-V3, whose experts the linen decoder lacks.
    with pytest.raises(ValueError, match="mixtures of experts \\(deepseek_v3\\)"):
        linen_models.from_pretrained(FIXTURES / "kimi_k2")
    with pytest.raises(ValueError, match=r"an encoder .*gemma3_text"):
        linen_models.check_family(
            examples.checkpoint.read_config(FIXTURES / "embeddinggemma")
        )


def test_the_command_line_prints_tokens_and_their_rate():
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        cli.main(
            [
                "--checkpoint",
                str(FIXTURES / "llama"),
                "--prompt-ids",
                ",".join(str(t) for t in _reference("llama")["input_ids"][0]),
                "--max-new-tokens",
                "8",
            ]
        )
    lines = printed.getvalue().splitlines()
    greedy = _reference("llama")["greedy"][0]
    assert lines[0] == "tokens: " + ",".join(str(t) for t in greedy)
    assert lines[1].endswith("tokens/s (prefill and decode)")
