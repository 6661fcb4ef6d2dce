"""A conference room as the configuration file's `conferences:` and the API write it; the
router runs it (destination `conference:NAME`, pbx/conference/engine.py).

PINs: with `pin` set, a caller must enter it (or `moderator_pin`) to join; with only
`moderator_pin` set, the room is open and a caller who enters nothing (presses # or
waits) joins as a member, while one who enters the moderator PIN joins as a moderator;
with neither, callers join at once and nobody is a moderator. `wait_for_moderator`
needs a `moderator_pin`, else nobody could ever start the room."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from ipbx.pbx.destination import Kind
from ipbx.pbx.schema import Item, Name


class ConferenceConfig(Item):
    """A conference room. `max_members` 0 means no limit; `record` records the room's
    mix while anybody is in it; `wait_for_moderator` keeps members on music on hold
    (and out of the mix) until a moderator is in; `announce_join` plays a tone to the
    room when someone joins or leaves."""

    destination_kind: ClassVar[Kind | None] = Kind.CONFERENCE

    name: Name
    pin: str | None = Field(default=None, pattern=r"^[0-9]{1,16}$")
    moderator_pin: str | None = Field(default=None, pattern=r"^[0-9]{1,16}$")
    max_members: int = Field(default=0, ge=0, le=10000)
    record: bool = False
    wait_for_moderator: bool = False
    announce_join: bool = True

    @model_validator(mode="after")
    def _check_pins(self) -> Self:
        if self.pin is not None and self.pin == self.moderator_pin:
            raise PydanticCustomError(
                "same_pin",
                "the moderator PIN must differ from the PIN",
                {"at": ("moderator_pin",)},
            )
        if self.wait_for_moderator and self.moderator_pin is None:
            raise PydanticCustomError(
                "no_moderator_pin",
                "wait_for_moderator needs a moderator_pin",
                {"at": ("wait_for_moderator",)},
            )
        return self
