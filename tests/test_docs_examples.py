"""The documentation's configuration is the configuration the code reads.

- Every fenced ```yaml block of README.md and docs/*.md is a configuration file, written
  whole so that a reader can copy it: each loads through ipbx.config's loader (unknown
  keys, types, references to extensions, menus and announcements, all refused with
  FILE:LINE as a user would see them).
- Every key the tables of docs/configuration.md and the key tables under a heading that
  names a list (### `trunks` in docs/trunks.md) document is a field of the configuration,
  and so is every name of a `{field, field: default}` list that describes one; and every
  field of the configuration is documented there.

The events' documented fields are checked on real calls where the events come from:
call.started's trunk and caller_name in tests/interop/test_answered_by_a_person.py.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from ipbx.config import Config, load_config
from ipbx.configfile import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```$", re.S | re.M)
HEADING = re.compile(r"^#+ (.*)$")
ROW = re.compile(r"^\| (`[^|]+`) \|[^|]*\| (.*) \|$")
# A row's meaning that starts with its fields: `{a, b: default}` (or `{a, b}` or `{a, c}`).
BRACES = re.compile(r"^`\{[^`]*\}`(?: or `\{[^`]*\}`)*")


def yaml_blocks() -> list[tuple[str, str]]:
    """(page:line, text) of every ```yaml block."""
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for match in YAML_BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            blocks.append((f"{page.relative_to(REPO_ROOT)}:{line}", match.group(1)))
    return blocks


def documented_keys() -> list[tuple[str, str, list[str]]]:
    """(page:line, key, the fields its `{...}` description names) of every row of
    docs/configuration.md's tables, and of the tables of docs/*.md under a heading that
    is one key (### `trunks`), which document that key's items."""
    rows = []
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        whole = page.name == "configuration.md"  # its keys are written in full
        prefix = ""
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if heading := HEADING.match(line):
                title = heading.group(1).strip()
                prefix = f"{title.strip('`')}[]." if re.fullmatch(r"`\w+`", title) else ""
            elif (row := ROW.match(line)) and (whole or prefix):
                names = re.findall(r"`([^`]+)`", row.group(1))
                braces = BRACES.match(row.group(2))
                listed = re.findall(r"`\{(.*?)\}`", braces.group() if braces else "")
                fields = [
                    part.split(":")[0].strip()
                    for text in listed
                    for part in re.sub(r"\{[^{}]*\}", "", text).split(",")
                    if part.strip() not in ("...", "…")  # "and more", listed elsewhere
                ]
                where = f"{page.relative_to(REPO_ROOT)}:{number}"
                rows += [(where, prefix + name, fields) for name in names]
    return rows


def _model(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds: itself, or in a list, or optional."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            if (model := _model(argument)) is not None:
                return model
    return None


def _keys(model: type[BaseModel]) -> dict[str, Any]:
    """A model's keys as written in the file (a field's alias where it has one)."""
    return {info.alias or name: info.annotation for name, info in model.model_fields.items()}


def resolve(key: str) -> type[BaseModel] | None:
    """The model under a documented key such as `extensions[].forward` (None for a plain
    value); AssertionError naming the part that is no field."""
    model: type[BaseModel] | None = Config
    for part in key.split("."):
        assert model is not None, f"{key}: {part} is under a plain value"
        keys = _keys(model)
        name = part.removesuffix("[]")
        assert name in keys, f"{key}: {name} is not a key ({', '.join(sorted(keys))})"
        model = _model(keys[name])
    return model


@pytest.mark.parametrize(("where", "text"), yaml_blocks(), ids=lambda v: v.split("\n")[0])
def test_each_yaml_example_of_the_docs_loads_as_a_configuration(
    tmp_path: Path, where: str, text: str
) -> None:
    path = tmp_path / "ipbx.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        pytest.fail(f"{where}: the example does not load:\n{exc}")


def test_every_documented_key_is_a_field_of_the_configuration() -> None:
    rows = documented_keys()
    assert len(rows) > 60, rows  # the tables were found
    for where, key, fields in rows:
        try:
            model = resolve(key)
            if fields:
                assert model is not None, f"{key} holds no fields"
                for name in fields:
                    assert name in _keys(model), f"{key}: {name} is not a key"
        except AssertionError as exc:
            pytest.fail(f"{where}: {exc}")


def test_every_field_of_the_configuration_is_documented() -> None:
    """A key the code reads and no table names (a section such as `sip` counts as
    documented through its keys)."""
    documented = {
        path.replace("[]", "")
        for _, key, fields in documented_keys()
        for path in (key, *(f"{key}.{name}" for name in fields))
    }
    missing: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, annotation in _keys(model).items():
            path = prefix + name
            if path not in documented and not any(d.startswith(f"{path}.") for d in documented):
                missing.append(path)
            # Into the keys of a section or a list's items that the docs list; a value
            # written as one string (a listen URL) is documented as that string.
            inner = _model(annotation)
            if inner is not None and any(d.startswith(f"{path}.") for d in documented):
                walk(inner, f"{path}.")

    walk(Config, "")
    assert not missing, f"no key table in docs/ names {missing}"


def test_a_key_the_code_does_not_know_is_caught(tmp_path: Path) -> None:
    """What the two tests rely on: a misspelt key fails in the loader and in resolve."""
    path = tmp_path / "ipbx.yaml"
    path.write_text("extensions:\n  - {number: '1000', password: secret1000, recrod: always}\n")
    with pytest.raises(ConfigError, match=r"ipbx.yaml:2: extensions\[0\].recrod: unknown key"):
        load_config(path)
    with pytest.raises(AssertionError, match="tenant is not a key"):
        resolve("extensions[].tenant")
