"""What every feature's configuration model is built of.

A feature module defines the model of its own part of the configuration file
(pbx/dialplan.py its numbers and outbound routes, pbx/schedule.py its schedules ...) from
these; config.py composes them into the whole file and checks what spans features:
references between them and loops. A feature whose code runs calls keeps its model in a
module of its own (apps/ivr_config.py beside apps/ivr.py), so that the configuration
loads without the call engine.

Every model is frozen and forbids unknown keys, so a typo such as ``lisen:`` is an
error rather than a silently ignored setting. An `Item` is an entry of one of the file's
lists (``groups:``, ``trunks:`` ...); every list of Items can also be provisioned, item
by item, through the API and `ipbx apply` (pbx/provisioning.py).

A check that points at one field of a list sets ``at`` in its error's context: the
path from the list to the field, which config.py's error formatter follows to the
field's line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from typing import Annotated, Any, ClassVar, Self, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.prompt import Prompt

# Where something is written: a path of keys and list indexes, as pydantic's error
# locations are (``("groups", 0, "fallback")``).
Where = tuple[str | int, ...]


class Model(BaseModel):
    # Numbers are accepted where strings are expected because users write
    # `number: 1000` unquoted.
    model_config = ConfigDict(frozen=True, extra="forbid", coerce_numbers_to_str=True)


class Item(Model):
    """An entry of one of the configuration file's lists, named by its `key_field`."""

    key_field: ClassVar[str] = "name"
    # False: the default tenant's only (call routing); True: any tenant's, by `tenant`.
    any_tenant: ClassVar[bool] = False
    # Fields that are written (through the API) but never kept in the item nor shown.
    secrets: ClassVar[frozenset[str]] = frozenset()
    # The destination kind whose target is an item's key (group:sales), if there is one;
    # config.py refuses such a destination when no item has that key.
    destination_kind: ClassVar[Kind | None] = None

    def key(self) -> str:
        """What names the item in its list and in the API's paths."""
        return str(getattr(self, self.key_field))

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        """Every destination the item holds, with where in the item it is written."""
        return iter(())

    @classmethod
    def check_list(cls, items: Sequence[Self], field: str) -> None:
        """Refuse the second item with an already-used key, pointing at its line."""
        unique(items, cls.key_field, field)


def unique(items: Sequence[Any], key: str, field: str) -> None:
    """Refuse the second of `items` (the list `field`) with an already-seen `key`."""
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        value = getattr(item, key)
        if value in first_index:
            raise PydanticCustomError(
                f"duplicate_{key}",
                "{key} {value} is already used by {field}[{first}]",
                {
                    "key": key,
                    "value": value,
                    "field": field,
                    "first": first_index[value],
                    "at": (index, key),
                },
            )
        first_index[value] = index


@cache
def item_lists(model: type[BaseModel]) -> dict[str, type[Item]]:
    """The fields of `model` that are lists of Items, with their item model, in order."""
    lists: dict[str, type[Item]] = {}
    for name, field in model.model_fields.items():
        if get_origin(field.annotation) is list:
            (item,) = get_args(field.annotation)
            if isinstance(item, type) and issubclass(item, Item):
                lists[name] = item
    return lists


def as_destination(value: Any) -> Any:
    """A destination read from its text (``group:sales``)."""
    if isinstance(value, Destination):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a destination such as extension:1001 or group:sales")
    return Destination.parse(value)


def _prompt(value: Any) -> Any:
    if isinstance(value, Prompt):
        return value
    if not isinstance(value, str):
        raise ValueError("expected text to speak or file:PATH")
    return Prompt.parse(value)


# Written, stored and shown as strings; the JSON Schema (the API's document) says so.
AS_TEXT = PlainSerializer(str, return_type=str)
DestinationField = Annotated[
    Destination,
    BeforeValidator(as_destination),
    AS_TEXT,
    WithJsonSchema({"type": "string", "description": "kind:target, as group:sales"}),
]
# A greeting or message: text spoken by text-to-speech, or file:PATH (pbx/prompt.py).
PromptField = Annotated[
    Prompt,
    BeforeValidator(_prompt),
    AS_TEXT,
    WithJsonSchema({"type": "string", "description": "text to speak, or file:PATH"}),
]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Digits = Annotated[str, Field(pattern=r"^[0-9]+$")]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
