"""The registry of attention implementations: name -> implementation module.

Each implementation is one module beside this one that takes a
`request.Request` (its docstring states the contract); adding one is that
file and one entry in `REGISTRY`, plus a place in `PREFERENCE` if
``implementation=None`` may choose it.
"""

from __future__ import annotations

from types import ModuleType

from flax_posenc._src.attention import jax_nn, xla
from flax_posenc._src.attention.request import Request

# In the order the error messages list them.
REGISTRY: dict[str, ModuleType] = {
    "xla": xla,
    "jax": jax_nn,
}
IMPLEMENTATIONS = tuple(REGISTRY)

# implementation=None takes the first of these that prefers the request; "xla"
# expresses every request, so it ends the list.
PREFERENCE = ("jax", "xla")


def default(request: Request) -> str:
    """The implementation's name that ``implementation=None`` chooses."""
    return next(name for name in PREFERENCE if REGISTRY[name].preferred(request))


def reads_structured_mask(name: str) -> bool:
    """Whether the implementation reads a request's ``causal`` and ``local_window``.

    `request` states the contract; an implementation says so with
    ``READS_STRUCTURED_MASK = True``.
    """
    return getattr(REGISTRY[name], "READS_STRUCTURED_MASK", False)
