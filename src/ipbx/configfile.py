"""YAML configuration files read with their line numbers, and errors that name them.

The YAML is composed into nodes first, which remember where they started, and each
pydantic error location is walked back through that node tree to a line, so errors
read ``ipbx.yaml:7: extensions[1].password: ...``. Integers are YAML 1.2 decimals and
dates stay strings (see `_Loader`); a repeated key is an error.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ipbx.pbx.schema import Where

_M = TypeVar("_M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, line and field."""


def field_locator(path: Path | None) -> Callable[[Where], str]:
    """A function naming where a field of the file `path` is written, as
    ``FILE:LINE: field`` (just ``field`` for the embedded default). The file is read
    again only when a first field is located: most starts have nothing to report."""

    @functools.cache
    def root() -> yaml.Node | None:
        return read_yaml(path)[1] if path is not None else None

    def locate(at: Where) -> str:
        line = line_of(root(), at)
        return f"{path}:{line}: {field_path(at)}" if line else field_path(at)

    return locate


class _Loader(yaml.SafeLoader):
    """SafeLoader whose integers are YAML 1.2 decimals without leading zeros.

    YAML 1.1 reads ``0100`` as octal 64 and ``1:30`` as sexagesimal 90, which would turn
    an extension number into a different one. Here those stay strings.
    """


_INT_TAG = "tag:yaml.org,2002:int"
# Dates stay strings too: pydantic reads them where a date is expected, and refuses a
# 2026-13-01 with its line, where PyYAML's own date constructor would raise unmarked.
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file into Python data plus the node tree that knows line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read: {reason}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, None
        _check_duplicate_keys(node, path)
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{line} {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    finally:
        loader.dispose()


def _check_duplicate_keys(node: yaml.Node, path: Path) -> None:
    # PyYAML keeps the last of two equal keys silently; a repeated key is almost always a
    # copy-paste mistake, so it is reported like any other error.
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise ConfigError(f"{path}:{line}: {key.value}: duplicate key")
                seen.add(key.value)
            _check_duplicate_keys(value, path)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_duplicate_keys(item, path)


def validate(model: type[_M], parsed: tuple[Any, yaml.Node | None], path: Path) -> _M:
    data, root = parsed
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = sorted(
            (_describe(error, root) for error in exc.errors(include_url=False)),
            key=lambda issue: issue[0] or 0,
        )
        raise ConfigError(
            "\n".join(
                f"{path}:{line}: {text}" if line else f"{path}: {text}" for line, text in issues
            )
        ) from None


def _describe(error: Any, root: yaml.Node | None) -> tuple[int | None, str]:
    """The line a pydantic error points at, and its text as ``field: message``."""
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"]) + tuple(ctx.get("at", ()))
    message = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    field = field_path(loc)
    return line_of(root, loc), f"{field}: {message}" if field else message


def field_path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # pydantic's marker for an error in a mapping's key, named already
        else:
            text += f".{part}" if text else part
    return text


def line_of(root: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest node that `loc` reaches in the YAML tree.

    A missing field has no node of its own, so the enclosing mapping's line is used.
    """
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    line = key.start_mark.line + 1
                    child = value
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
