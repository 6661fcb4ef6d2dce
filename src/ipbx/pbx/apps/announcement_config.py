"""An announcement as the configuration file's `announcements:` and the API write it; the
router plays it (destination `announcement:NAME`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator

from ipbx.pbx.destination import Kind
from ipbx.pbx.prompt import Prompt
from ipbx.pbx.schema import Item, Name


class AnnouncementConfig(Item):
    """A message played to the caller, who is then hung up on: `text` (spoken) or `file`."""

    destination_kind: ClassVar[Kind | None] = Kind.ANNOUNCEMENT

    name: Name
    text: str | None = Field(default=None, min_length=1)
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> AnnouncementConfig:
        if (self.text is None) == (self.file is None):
            raise ValueError("give either text or file")
        if self.file is not None:
            Prompt.from_file(self.file)
        return self

    @property
    def prompt(self) -> Prompt:
        if self.file is not None:
            return Prompt.from_file(self.file)
        assert self.text is not None
        return Prompt(text=self.text)
