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

import contextlib
import io
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

import examples
from examples import __main__ as cli

FIXTURES = pathlib.Path(examples.__file__).parent / "fixtures"
NAMES = [
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "smollm3",
    "olmo2",
    "olmo3",
    "ministral3",
    "phi3",
    "cohere2",
    "deepseek_v3",
    "gemma2",
    "gemma3",
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
    logits = model(
        jnp.asarray(ids), positions=_positions(mask), segments=jnp.asarray(mask)
    )
    real = mask.astype(bool)  # padding tokens' logits are nobody's
    want = ref["logits"][real]
    np.testing.assert_allclose(
        np.asarray(logits)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )
    tokens = examples.generate(model, ids, max_new_tokens=8, attention_mask=mask)
    np.testing.assert_array_equal(tokens, ref["greedy"])


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


@pytest.mark.parametrize("name", ["bert", "modernbert"])
def test_encoder_last_hidden_states_equal_transformers(name):
    """BERT: learned positions, token types, post-LN, biases. ModernBERT:
    global and bidirectional-window layers with their own bases, GeGLU, no
    norm before the first attention. A padded batch (the padding tokens' own
    states are not compared: here they attend nothing)."""
    ref = _reference(name)
    model = examples.from_pretrained(FIXTURES / name)
    types = {"token_type_ids": ref["token_type_ids"]} if name == "bert" else {}
    hidden = model(ref["input_ids"], attention_mask=ref["attention_mask"], **types)
    real = ref["attention_mask"].astype(bool)
    want = ref["hidden"][real]
    np.testing.assert_allclose(
        np.asarray(hidden)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )


@pytest.mark.parametrize("layer", [0, 1])
def test_gpt_oss_attention_layers_equal_transformers(layer):
    """gpt-oss's attention alone (its mixture of experts is not built):
    learned sinks, a sliding layer (window 4) and a full one, biases, YaRN,
    over a left-padded batch inside transformers' forward pass."""
    ref = _reference("gpt_oss")
    module = examples.load_attention(FIXTURES / "gpt_oss", layer)
    assert module.sinks is not None
    mask = ref["attention_mask"]
    out = module(ref[f"input_{layer}"], positions=ref["positions"], segments=mask)
    real = mask.astype(bool)
    want = ref[f"output_{layer}"][real]
    np.testing.assert_allclose(
        np.asarray(out)[real], want, atol=1e-4 * np.abs(want).max(), rtol=0
    )


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
    model = examples.models.build(
        json.loads((FIXTURES / "qwen2/config.json").read_text())
    )
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


def test_unknown_families_are_refused_by_name():
    with pytest.raises(ValueError, match="build no model_type 'gpt2'"):
        examples.models.build({"model_type": "gpt2", "num_hidden_layers": 1})


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


SHARDED_PROGRAM = """
import json
import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
import examples

folder = "examples/fixtures/qwen2"
mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
model = examples.from_pretrained(folder, mesh=mesh)
plain = examples.from_pretrained(folder)
ref = dict(np.load(folder + "/reference.npz"))
ids = jax.device_put(ref["input_ids"], NamedSharding(mesh, P("data")))
attention = model.layers[0].attention.sublayer
logits = jax.jit(lambda m, ids: m(ids))(model, ids)
print(json.dumps({
    "query": str(attention.query.kernel.get_value().sharding.spec),
    "embed": str(model.embed.embedding.get_value().sharding.spec),
    "down": str(model.layers[0].mlp.sublayer.down.kernel.get_value().sharding.spec),
    "diff": float(np.abs(np.asarray(logits) - plain(ref["input_ids"])).max()),
}))
"""


def test_loading_straight_onto_a_mesh():
    """Four CPU devices, 2 x 2 ("data", "model"): the parameters arrive
    sharded by their logical names, and the logits are the unsharded ones."""
    import os
    import subprocess
    import sys

    from tests import children

    env = dict(os.environ, XLA_FLAGS=children.xla_flags_with_devices(4))
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, "-c", SHARDED_PROGRAM],
        env=env,
        cwd=pathlib.Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["query"] == "P(None, 'model', None)"
    assert found["embed"] == "P('model', None)"
    assert found["down"] == "P('model', None)"
    assert found["diff"] < 1e-6


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
