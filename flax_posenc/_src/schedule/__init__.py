"""Per-layer attention schedules: what each layer of a published model is.

- `families`: the table, one `Family` per ``model_type``.
- `layers`: `LayerAttention` and `attention_schedule`, the reader.
"""

from flax_posenc._src.schedule import families, layers

__all__ = ["families", "layers"]
