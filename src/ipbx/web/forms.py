"""A form's fields to an item and its errors back to the fields: the checks themselves
are the item's model and the API's service layer (api/configuration.py)."""

from __future__ import annotations

import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import HTTPException
from pydantic import ValidationError

from ipbx.pbx.provisioning import ItemKind

T = TypeVar("T")
# Errors by field name; "" for what belongs to no field of the form.
Errors = dict[str, str]


def filled(form: dict[str, str]) -> dict[str, str]:
    """The fields the user filled in (an empty field takes the item's default)."""
    return {key: value.strip() for key, value in form.items() if value.strip()}


def build(kind: ItemKind, fields: dict[str, Any]) -> tuple[Any, Errors]:
    """The item from a form's fields, or the model's errors by field."""
    try:
        return kind.model.model_validate(fields), {}
    except ValidationError as exc:
        errors: Errors = {}
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            ctx = error.get("ctx") or {}
            message = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
            errors.setdefault(field, message)
        return None, errors


async def attempt(change: Awaitable[T], fields: set[str]) -> tuple[T | None, Errors]:
    """Run a change through the service layer: its result, or its refusal as an error
    next to the field it names. 403 is not a form error and passes on."""
    try:
        return await change, {}
    except HTTPException as exc:
        if exc.status_code == 403:
            raise
        path, _, message = str(exc.detail).partition(": ")
        field = re.split(r"[.\[]", path, maxsplit=1)[0]
        if field in fields:
            return None, {field: message if field == path else f"{path}: {message}"}
        return None, {"": str(exc.detail)}
