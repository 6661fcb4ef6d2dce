"""Call parking as the configuration file's `parking:` writes it; pbx/parking.py runs it.

``parking: {slots: "701-720", timeout_seconds: 60}`` makes 701 to 720 parking slots
and the number before the first one (700) the park number: a blind transfer to 700
parks the call in the first free slot, dialling a slot takes the call parked there,
and a call left parked `timeout_seconds` rings the extension that parked it again.
`number` names another park number. Without `parking:` no number parks anything.

The slots and the park number are numbers of their own: none may be an extension, one
of the `numbers:`, the echo test or the park number itself, which `check_parking`
(the validator of `Config.parking`, which sees the fields declared before it) refuses,
pointing at the field.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ipbx.pbx.schema import Digits, Model

# A parking lot larger than this is a typo (701-7200), not a lot.
MAX_SLOTS = 1000
_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


class ParkingConfig(Model):
    """The parking slots (``FIRST-LAST``), how long a call stays parked before it rings
    its parker again, and the park number (by default the one before the first slot)."""

    slots: str
    timeout_seconds: int = Field(default=60, ge=1, le=3600)
    number: Digits | None = None

    @field_validator("slots")
    @classmethod
    def _check_slots(cls, value: str) -> str:
        found = _RANGE.match(value)
        if found is None:
            raise ValueError(f"{value!r}: expected a range of numbers, FIRST-LAST (701-720)")
        first, last = int(found.group(1)), int(found.group(2))
        if first > last:
            raise ValueError(f"{value!r}: the first slot is after the last")
        if last - first + 1 > MAX_SLOTS:
            raise ValueError(f"{value!r}: more than {MAX_SLOTS} slots")
        return f"{found.group(1)}-{found.group(2)}"

    @model_validator(mode="after")
    def _check_number(self) -> ParkingConfig:
        if self.number is not None and self.number in self.slot_numbers:
            raise PydanticCustomError(
                "park_number_in_slots",
                "{number} is one of the slots {slots}",
                {"number": self.number, "slots": self.slots, "at": ("number",)},
            )
        if self.number is None and int(self.slots.split("-")[0]) == 0:
            raise PydanticCustomError(
                "no_park_number",
                "the slots start at 0: give the park number",
                {"at": ("number",)},
            )
        return self

    @property
    def slot_numbers(self) -> tuple[str, ...]:
        """The slots, in order; as wide as the first is written (0701-0720 keep the 0)."""
        first, last = self.slots.split("-")
        width = len(first)
        return tuple(str(n).zfill(width) for n in range(int(first), int(last) + 1))

    @property
    def park_number(self) -> str:
        """The number a call is transferred to to park it."""
        if self.number is not None:
            return self.number
        first = self.slots.split("-")[0]
        return str(int(first) - 1).zfill(len(first))


def check_parking(value: ParkingConfig | None, info: ValidationInfo) -> ParkingConfig | None:
    """The park number and the slots are none of the file's other numbers: extensions,
    `numbers:` and the echo test (validated before `parking`, in `info.data`)."""
    if value is None:
        return value
    taken: dict[str, str] = {}
    for extension in info.data.get("extensions", ()):
        taken[extension.number] = f"extension {extension.number}"
    for number in info.data.get("numbers", ()):
        taken.setdefault(number.number, f"the number {number.number} (numbers:)")
    echo = info.data.get("echo_test")
    if echo is not None:
        taken.setdefault(echo, f"the echo test {echo}")
    park = value.park_number
    if park in taken:
        field = "number" if value.number is not None else "slots"
        raise _clash(f"the park number {park} is {taken[park]}", field)
    for slot in value.slot_numbers:
        if slot in taken:
            raise _clash(f"slot {slot} is {taken[slot]}", "slots")
    return value


def _clash(message: str, field: str) -> PydanticCustomError:
    return PydanticCustomError(
        "parking_number_taken", "{message}", {"message": message, "at": (field,)}
    )


Parking = Annotated[ParkingConfig | None, AfterValidator(check_parking)]
"""The type of `Config.parking`: declared after the extensions, numbers and echo test,
which `check_parking` reads."""
