"""docs/plugin-reference.md names every [train] key, every field of the exported model and every
attribute a component may declare: a key or attribute added to the code without its line fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import qbench
from qbench.components import COMPONENT_KINDS, REGISTRATION_HOOKS, Component
from qbench.host import DISABLE_ENV
from qbench.trainconfig import TRAIN_PARAMS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "plugin-reference.md").read_text()


def section(title: str) -> str:
    start = DOC.index(f"## {title}")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


def table_keys(text: str) -> set[str]:
    """The first cell of every table row, as `code` names (a row may name several: `a`, `b`)."""
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            found |= {re.sub(r"\(.*", "", name) for name in re.findall(r"`([^`]+)`", first)}
    return found


def test_every_train_key_is_documented_with_its_default():
    rows = {line.split("|")[1].strip(" `"): line for line in section("The training recipe").splitlines()
            if line.startswith("| `")}  # fmt: skip
    assert set(rows) == set(TRAIN_PARAMS)
    for key, spec in TRAIN_PARAMS.items():
        assert f"| {spec.default:g} |" in rows[key].replace(".0 |", " |") or f"| {spec.default} |" in rows[key], key


@pytest.mark.parametrize("name", ["ExportedModel", "ExportedLayer", "ExportedTensor"])
def test_every_field_of_the_exported_model_is_documented(name):
    from qbench import export

    cls = getattr(export, name)
    text = section("The exported model")
    documented = table_keys(text) | set(re.findall(r"`(\w+)`", text))
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in documented]
    assert not missing, f"{name}: fields {missing} are not in docs/plugin-reference.md"


@pytest.mark.parametrize("kind", ["component", *COMPONENT_KINDS])
def test_every_attribute_a_component_may_declare_is_documented(kind):
    cls = Component if kind == "component" else COMPONENT_KINDS[kind]
    documented = table_keys(section("Every attribute a component may declare"))
    internal = {"kind", "declaration_problems", "measurement_problems", "label", "build"}
    own = {name for name in vars(cls) if not name.startswith("_")} - internal
    missing = sorted(own - documented)
    assert not missing, f"qbench.{cls.__name__}: {missing} are not in docs/plugin-reference.md"


def test_the_names_the_switches_and_the_hooks_are_documented():
    assert f"{DISABLE_ENV}=" in DOC and "-p no:NAME" in DOC
    assert "`ORIGIN:name`" in DOC
    plugins_doc = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    for hook in REGISTRATION_HOOKS.values():
        assert hook in DOC + plugins_doc
    assert qbench.hookspecs.qbench_register_hardware  # the table names hooks that exist
    for hook in REGISTRATION_HOOKS.values():
        assert callable(getattr(qbench.hookspecs, hook))
