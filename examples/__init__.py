"""Whole published models built from flax_posenc's parts (not installed).

``from_pretrained(folder)`` reads a checkpoint folder as transformers saves
it (``config.json`` + ``model.safetensors``) into an NNX model whose call on
int ids ``[batch, seq]`` gives the logits ``[batch, seq, vocab]`` (T5: the
decoder's, with ``decoder_input_ids=``; an encoder's, BERT, ModernBERT,
EmbeddingGemma, the last hidden states ``[batch, seq, hidden]``);
``generate`` continues prompts with the decode cache. Run ``python -m
examples --checkpoint DIR --prompt-ids 1,2,3``.
"""

from examples.checkpoint import (
    from_pretrained,
    load_weights,
    read_tensors,
)
from examples.generation import generate, prefill
from examples.models import FAMILIES, Decoder

__all__ = [
    "FAMILIES",
    "Decoder",
    "from_pretrained",
    "generate",
    "load_weights",
    "prefill",
    "read_tensors",
]
