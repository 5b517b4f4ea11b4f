"""The generated parts of the docs site (scripts/mkdocs_hooks.py): each family's config table lists
every field of its dataclass with the description its docstring gives, inherited ones included."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

import npkit

pytest.importorskip("mkdocs")
HOOKS = Path(__file__).resolve().parent.parent / "scripts" / "mkdocs_hooks.py"
spec = importlib.util.spec_from_file_location("mkdocs_hooks", HOOKS)
hooks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hooks)


@pytest.mark.parametrize("family", sorted(npkit.MODELS))
def test_config_table_has_every_field_with_its_default(family):
    cls = npkit.MODELS[family].config_class
    rows = [line for line in hooks.config_table(family).splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == [f.name for f in dataclasses.fields(cls)]
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    for row in rows:
        name = row.split("`")[1]
        if name in defaults:
            assert f"`{defaults[name]!r}`" in row


def test_the_most_derived_description_wins_and_continuation_lines_join():
    docs = hooks.attribute_docs(npkit.ANPConfig)
    assert docs["num_heads"] == "heads of every attention layer; must divide ``r_dim``."  # ANPConfig's own
    assert docs["r_dim"].startswith("size of the representation") and docs["r_dim"].endswith("pooled summary).")
    assert docs["z_dim"]  # from LatentConfig, a base


def test_a_field_without_a_description_fails_the_build():
    @dataclasses.dataclass
    class Undocumented(npkit.ModelConfig):
        """No Attributes section for the new field."""

        new_field: int = 1

    class Family:
        name, config_class = "undocumented", Undocumented

    npkit.MODELS["undocumented"] = Family
    try:
        with pytest.raises(hooks.PluginError, match="new_field has no description"):
            hooks.config_table("undocumented")
    finally:
        del npkit.MODELS["undocumented"]
