"""The package surface: exports and import hygiene (the README's snippets run in
test_docs.py, which also checks what they print)."""

import pathlib
import subprocess
import sys

import flax_posenc as fp
import flax_posenc.linen as fpl

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_all_names_exist_and_are_documented():
    for module in (fp, fpl):
        assert sorted(module.__all__) == list(module.__all__)
        for name in module.__all__:
            doc = getattr(module, name).__doc__ or ""
            assert "Args:" in doc or "Attributes:" in doc, name


def test_core_imports_without_flax():
    code = (
        "import sys, flax_posenc; "
        "assert not any(m == 'flax' or m.startswith('flax.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('flax.'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_linen_is_reachable_from_the_package():
    assert fp.linen.TokenEmbedding is fpl.TokenEmbedding


def test_nnx_is_reachable_from_the_package():
    import flax_posenc.nnx as fpn

    assert fp.nnx.TokenEmbedding is fpn.TokenEmbedding
    # every linen module has its twin; the initializer serves both
    linen_modules = set(fpl.__all__) - {"pretrained_init"}
    assert set(fpn.__all__) == linen_modules | {"from_linen", "to_linen"}
