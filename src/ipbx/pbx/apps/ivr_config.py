"""An IVR menu as the configuration file's `ivrs:` and the API write it; pbx/apps/ivr.py
runs it (destination `ivr:NAME`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar

from pydantic import Field

from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.schema import DestinationField, Item, Name, PromptField, Where


class IvrConfig(Item):
    """An IVR menu (auto-attendant): the greeting, then a digit picks an option; with
    `direct_dial` the caller may also dial an extension's number. No input within
    `timeout_seconds`, or a wrong one, replays the greeting up to `retries` times and
    then goes to `timeout_destination` or `invalid_destination`."""

    destination_kind: ClassVar[Kind | None] = Kind.IVR

    name: Name
    greeting: PromptField
    options: dict[Annotated[str, Field(pattern=r"^[0-9*#]$")], DestinationField] = Field(
        default_factory=dict
    )
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=10)
    timeout_destination: DestinationField = Destination(Kind.HANGUP)
    invalid_destination: DestinationField = Destination(Kind.HANGUP)
    direct_dial: bool = False

    def destinations(self) -> Iterator[tuple[Where, Destination]]:
        for digit, target in self.options.items():
            yield ("options", digit), target
        yield ("timeout_destination",), self.timeout_destination
        yield ("invalid_destination",), self.invalid_destination
