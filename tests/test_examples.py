"""examples/: whole checkpoints from their safetensors, against transformers.

The fixtures (examples/fixtures/, made by examples/make_fixtures.py with
transformers in a scratch environment) hold tiny random-weight checkpoints
as transformers saves them and the reference logits and greedy tokens. The
tests read them with the examples' code only.

Tolerance: logits to a relative 1e-4 of the reference's largest. Both sides
compute in float32, so they differ by float32 rounding (about 1e-6 relative
here, through two or four layers); 1e-4 leaves room for other BLAS and XLA
versions while a wrong rotation, norm or mask is off by 1e-2 or more.
Greedy tokens must be equal: the script chose prompts whose top-2 margin
exceeds 1e-3 at every step.
"""

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import examples

FIXTURES = pathlib.Path(examples.__file__).parent / "fixtures"
NAMES = [
    "llama",
    "qwen3",
    "mistral",
    "smollm3",
    "olmo2",
    "olmo3",
    "ministral3",
    "phi3",
    "cohere2",
    "deepseek_v3",
    "llama4",
    "gemma2",
    "gemma3",
    "gemma4",
    "gemma4_moe",
    # Mixtures of experts (Llama 4's, DeepSeek-V3's and Gemma 4's above too).
    "gpt_oss",
    # ALiBi's biases of the cached keys' positions (Falcon-RW).
    "falcon_rw",
]


def _reference(name):
    return dict(np.load(FIXTURES / name / "reference.npz"))


def _positions(mask):
    return np.maximum(np.cumsum(mask, axis=1) - 1, 0).astype(np.int32)


@pytest.mark.parametrize("name", NAMES)
def test_logits_and_greedy_tokens_equal_transformers(name):
    ref = _reference(name)
    model = examples.from_pretrained(FIXTURES / name)
    ids, mask = ref["input_ids"], ref["attention_mask"]
    # The logits of the prompt written into the cache: the program generate
    # then runs (the forward pass without a cache is checked on Llama at
    # positions 10^5, on the mesh and for the encoders).
    logits = examples.prefill(model, ids, attention_mask=mask, max_length=7 + 8)
    real = mask.astype(bool)  # padding tokens' logits are nobody's
    rows = slice(None)
    if name == "llama4":
        # transformers' Llama 4 counts its chunks and its temperature from
        # the padded start of a row (cache positions), these from the row's
        # own positions, as the row alone would be: the unpadded row only.
        rows = mask.all(axis=1)
        real = real & rows[:, None]
    want = ref["logits"][real]
    np.testing.assert_allclose(
        np.asarray(logits)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )
    tokens = examples.generate(model, ids, max_new_tokens=8, attention_mask=mask)
    np.testing.assert_array_equal(tokens[rows], ref["greedy"][rows])


# Families whose attention and cache are those of a decoder above (Qwen2's
# biases, Phi-4-mini's partial rotation, EXAONE 4's hybrid layers as
# Cohere2's, the experts of Qwen3-MoE, Mixtral and OLMoE), and Llama's
# cousins (other keys for the biases, Arcee's MLP without a gate,
# Gemma 1's legacy "gelu", OLMo 1's weightless LayerNorms, EXAONE 4's
# reordered norms, GLM's fused MLP and half-rotating heads, GLM-4's norms by
# other names, Granite's multipliers, DeepSeek-V2's group-limited softmax
# routing and uncompressed queries, GPT-J's own key names and interleaved
# partial RoPE, Kimi K2's config read as DeepSeek-V3's, the QK LayerNorms of
# Phi and Persimmon, the text decoders of Qwen2-VL and Qwen3-VL, Falcon's
# fused heads by key/value group, OLMo's clip_qkv): the forward pass,
# run eagerly (no compile; the cache and generation are the decoders' above).
COUSINS = [
    "qwen2",
    "phi4_mini",
    "exaone4_hybrid",
    "qwen3_moe",
    "mixtral",
    "olmoe",
    "helium",
    "seed_oss",
    "ernie4_5",
    "arcee",
    "gemma",
    "olmo",
    "exaone4",
    "glm",
    "glm4",
    "granite",
    "cohere",
    "cohere_plus",
    "stablelm",
    "stablelm_parallel",
    "deepseek_v2",
    "phi",
    "gpt_neox",
    "gpt_neox_sequential",
    "apertus",
    "gptj",
    "kimi_k2",
    "phi_qk_layernorm",
    "persimmon",
    "qwen2_vl",
    "qwen3_vl",
    "falcon",
    "falcon_40b",
    "olmo_clipped",
]


def _check_forward(model, name):
    """The model's forward logits of the fixture's padded batch against the
    reference's, on the real tokens."""
    ref = _reference(name)
    ids, mask = ref["input_ids"], ref["attention_mask"]
    logits = model(ids, positions=_positions(mask), segments=mask)
    real = mask.astype(bool)
    want = ref["logits"][real]
    np.testing.assert_allclose(
        np.asarray(logits)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )


@pytest.mark.parametrize("name", COUSINS)
def test_forward_logits_equal_transformers(name):
    _check_forward(examples.from_pretrained(FIXTURES / name), name)


def test_gemma4_with_vision_bidirectional_attention_is_its_text_model(tmp_path):
    """The published Gemma 4 26B-A4B's text config says
    use_bidirectional_attention "vision": only an image's tokens attend both
    ways, so the text decoder is the same model (transformers 5.24 gives the
    fixture's logits to the last bit with it)."""
    import shutil

    shutil.copytree(FIXTURES / "gemma4_moe", tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["use_bidirectional_attention"] = "vision"
    (tmp_path / "config.json").write_text(json.dumps(config))
    _check_forward(examples.from_pretrained(tmp_path), "gemma4_moe")


def test_a_vision_language_checkpoint_in_transformers_4s_form(tmp_path):
    """Qwen2.5-VL as its published checkpoints are: the text config flat
    (M-RoPE's sections in rope_scaling, type "mrope"), the tensors under
    model. and visual. (transformers 5 saves text_config and
    model.language_model., model.visual.)."""
    from safetensors.numpy import save_file

    saved = json.loads((FIXTURES / "qwen2_5_vl/config.json").read_text())
    text = saved.pop("text_config")
    rope = text.pop("rope_parameters")
    flat = {**saved, **text, "model_type": "qwen2_5_vl"}
    flat["rope_theta"] = rope.pop("rope_theta")
    del rope["rope_type"]
    flat["rope_scaling"] = {**rope, "type": "mrope"}
    (tmp_path / "config.json").write_text(json.dumps(flat))
    tensors = examples.read_tensors(FIXTURES / "qwen2_5_vl")
    renamed = {
        n.replace("model.language_model.", "model.").replace(
            "model.visual.", "visual."
        ): t
        for n, t in tensors.items()
    }
    assert any(n.startswith("visual.") for n in renamed)
    save_file(renamed, str(tmp_path / "model.safetensors"))
    _check_forward(examples.from_pretrained(tmp_path), "qwen2_5_vl")


def test_exact_angles_at_an_offset_of_ten_to_the_five():
    """Llama at positions 10^5 + arange: ours is within float32 rounding of
    the float64 model, where transformers' float32 angles are off."""
    ref = _reference("llama")
    model = examples.from_pretrained(FIXTURES / "llama")
    far = np.asarray(
        model(jnp.asarray(ref["input_ids"][:1]), positions=ref["far_positions"]),
        np.float64,
    )
    exact = ref["far_logits_float64"]
    ours = np.abs(far - exact).max()
    theirs = np.abs(ref["far_logits_float32"] - exact).max()
    assert ours < 1e-5 * np.abs(exact).max()
    assert theirs > 100 * ours  # transformers' float32 angles: 8e-3 here


def test_stop_tokens_fill_the_row_with_the_pad_id():
    ref = _reference("qwen3")
    model = examples.from_pretrained(FIXTURES / "qwen3")
    ids, mask = ref["input_ids"], ref["attention_mask"]
    greedy = ref["greedy"]
    stop = int(greedy[0, 2])
    tokens = examples.generate(
        model, ids, max_new_tokens=8, attention_mask=mask, stop_tokens=[stop]
    )
    first = int(np.argmax(greedy[0] == stop))
    assert tokens[0, : first + 1].tolist() == greedy[0, : first + 1].tolist()
    assert (tokens[0, first + 1 :] == 0).all()  # the config's pad_token_id


def test_sharded_checkpoints_and_their_index(tmp_path):
    from safetensors.numpy import save_file

    tensors = examples.read_tensors(FIXTURES / "mistral")
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2]}
    halves["model-00002-of-00002.safetensors"] = names[1::2]
    for shard, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(tmp_path / shard))
    index = {"weight_map": {n: s for s, part in halves.items() for n in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(
        (FIXTURES / "mistral/config.json").read_text()
    )
    model = examples.from_pretrained(tmp_path)
    ref = _reference("mistral")
    ids, mask = ref["input_ids"], ref["attention_mask"]
    logits = model(ids, positions=_positions(mask), segments=mask)
    real = mask.astype(bool)
    np.testing.assert_allclose(
        np.asarray(logits)[real], ref["logits"][real], atol=1e-6, rtol=0
    )


def test_a_checkpoint_that_does_not_fit_is_one_error_naming_it_all():
    tensors = examples.read_tensors(FIXTURES / "qwen2")
    config = json.loads((FIXTURES / "qwen2/config.json").read_text())
    model = nnx.eval_shape(lambda: examples.models.build(config))
    broken = dict(tensors)
    del broken["model.layers.0.self_attn.q_proj.bias"]
    broken["model.layers.0.extra.weight"] = np.zeros(3, np.float32)
    broken["model.norm.weight"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError) as error:
        examples.load_weights(model, broken)
    message = str(error.value)
    assert "missing tensors: ['model.layers.0.self_attn.q_proj.bias']" in message
    assert "unexpected tensors: ['model.layers.0.extra.weight']" in message
    assert "model.norm.weight (5,) for norm.scale (32,)" in message


def test_missing_experts_and_quantized_ones_are_named():
    """One expert's tensor gone (Mixtral: one Linear per expert), and
    gpt-oss's experts in their published MXFP4 form (blocks and scales)."""
    tensors = examples.read_tensors(FIXTURES / "mixtral")
    config = json.loads((FIXTURES / "mixtral/config.json").read_text())
    model = nnx.eval_shape(lambda: examples.models.build(config))
    gone = "model.layers.1.block_sparse_moe.experts.2.w3.weight"
    with pytest.raises(ValueError, match=rf"missing tensors: \['{gone}'\]"):
        examples.load_weights(model, {k: v for k, v in tensors.items() if k != gone})
    tensors = examples.read_tensors(FIXTURES / "gpt_oss")
    config = json.loads((FIXTURES / "gpt_oss/config.json").read_text())
    model = nnx.eval_shape(lambda: examples.models.build(config))
    fused = "model.layers.0.mlp.experts.gate_up_proj"
    quantized = {k: v for k, v in tensors.items() if k != fused}
    quantized[fused + "_blocks"] = np.zeros((4, 32, 1, 16), np.uint8)
    quantized[fused + "_scales"] = np.zeros((4, 32, 1), np.uint8)
    with pytest.raises(ValueError) as error:
        examples.load_weights(model, quantized)
    assert f"missing tensors: ['{fused}']" in str(error.value)
    assert "quantized (MXFP4 blocks and scales)" in str(error.value)


def test_unknown_families_are_refused_by_name():
    with pytest.raises(ValueError, match="build no model_type 'gpt2'"):
        examples.models.build({"model_type": "gpt2", "num_hidden_layers": 1})


def test_sampling_follows_the_seed_and_tends_to_greedy():
    ref = _reference("gemma2")
    model = examples.from_pretrained(FIXTURES / "gemma2")
    ids, mask = ref["input_ids"], ref["attention_mask"]

    def run(**kw):
        return examples.generate(
            model, ids, max_new_tokens=8, attention_mask=mask, **kw
        )

    np.testing.assert_array_equal(run(temperature=1e-4, seed=3), ref["greedy"])
    first, again = run(temperature=1.0, seed=5), run(temperature=1.0, seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, run(temperature=1.0, seed=6))
