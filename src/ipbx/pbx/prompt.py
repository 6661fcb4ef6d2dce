"""Prompts: what a caller hears, written in the configuration as text or as a file.

``"Welcome to Example."`` is spoken by text-to-speech (media/tts.py); ``file:PATH`` plays a
recording in any format FFmpeg reads. A relative PATH is taken from the directory ipbx
starts in, as `data_dir` is. The file must exist when the configuration is loaded, so a
missing prompt is an error at `ipbx apply` time and not silence in a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FILE_PREFIX = "file:"


class PromptError(ValueError):
    """A prompt that cannot be played; the message says why."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """Exactly one of `text` (spoken) and `file` (played) is set."""

    text: str | None = None
    file: Path | None = None

    def __post_init__(self) -> None:
        if (self.text is None) == (self.file is None):
            raise PromptError("a prompt is either text or a file")

    @classmethod
    def parse(cls, value: str) -> Prompt:
        """``file:PATH`` (which must exist), or any other non-empty text to speak."""
        if value.startswith(FILE_PREFIX):
            return cls.from_file(value[len(FILE_PREFIX) :])
        if not value.strip():
            raise PromptError("empty prompt: expected text to speak or file:PATH")
        return cls(text=value)

    @classmethod
    def from_file(cls, path: str | Path) -> Prompt:
        if not str(path).strip():
            raise PromptError("file: needs a path, as file:prompts/welcome.wav")
        resolved = Path(path).expanduser().absolute()
        if not resolved.is_file():
            raise PromptError(f"prompt file {str(path)!r} does not exist")
        return cls(file=resolved)

    def __str__(self) -> str:
        return f"{FILE_PREFIX}{self.file}" if self.file is not None else str(self.text)
