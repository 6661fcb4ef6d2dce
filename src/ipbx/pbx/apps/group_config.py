"""A ring group (hunt group) as the configuration file's `groups:` and the API write it;
the router rings its members (destination `group:NAME`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.schema import DestinationField, Item, Name, Where

# A member is an extension's number, or an outside number in E.164 (a mobile), called
# through the outbound routes.
Member = Annotated[str, Field(pattern=r"^(\+[1-9][0-9]{1,14}|[0-9]+)$")]


class GroupConfig(Item):
    """A ring group (hunt group): its members ring all at once (ringall), one after
    another in order (sequential), one after another starting after the member who took
    the last call (roundrobin) or in random order (random). `ring_seconds` is how long
    each member rings (the whole group, for ringall) before the call goes to `fallback`.
    A member is an extension or an outside number in E.164 (`+15551234567`)."""

    destination_kind: ClassVar[Kind | None] = Kind.GROUP

    name: Name
    strategy: Literal["ringall", "sequential", "roundrobin", "random"] = "ringall"
    members: list[Member] = Field(min_length=1)
    ring_seconds: int = Field(default=20, ge=1, le=600)
    fallback: DestinationField = Destination(Kind.HANGUP)

    @field_validator("members")
    @classmethod
    def _unique_members(cls, value: list[str]) -> list[str]:
        for index, member in enumerate(value):
            if member in value[:index]:
                raise PydanticCustomError(
                    "duplicate_member",
                    "{member} is listed twice",
                    {"member": member, "at": (index,)},
                )
        return value

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        yield ("fallback",), self.fallback
