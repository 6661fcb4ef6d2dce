"""What a configuration needs of the machine it runs on, checked at start.

ipbx calls two things at run time that Python's packages do not bring: the espeak-ng
program, for every prompt written as text (IVR greetings, announcements, blacklist
messages, and the voicemail and feature-code prompts), and the libbcg729 library, for
G.729. `make serve` installs both; on a machine without them the server still runs
(a prompt that cannot be spoken is skipped, G.729 is left out of SDP), and `missing`
names, at start, each setting that will not work, with the file and line it is written
on, so the operator learns it from the log and not from a caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ipbx.config import Config
from ipbx.configfile import field_locator
from ipbx.media import tts
from ipbx.media.codecs import CODECS, G729
from ipbx.media.codecs.g729 import BCG729_PACKAGE
from ipbx.pbx.schema import Where


def missing(config: Config, path: Path | None) -> list[str]:
    """One line per setting of `config` (read from `path`, None for the embedded
    default) that needs a program or library this machine lacks."""
    locate = field_locator(path)
    problems: list[str] = []
    if not tts.available():
        problems.append(
            f"{tts.ESPEAK} is not installed (Debian package {tts.ESPEAK_PACKAGE}): "
            "spoken prompts are skipped, menus still take digits"
        )
        problems += [
            f"{locate(at)}: {text!r} needs {tts.ESPEAK}; it will be skipped"
            for at, text in _spoken_prompts(config)
        ]
    g729 = G729.name.lower()
    if G729 not in CODECS and g729 in config.media.codecs:
        why = f"needs libbcg729 (Debian package {BCG729_PACKAGE}); G.729 is left out"
        if "codecs" in config.media.model_fields_set:
            at: Where = ("media", "codecs", config.media.codecs.index(g729))
            problems.append(f"{locate(at)}: {g729} {why}")
        else:
            problems.append(f"media.codecs (default): {g729} {why}")
    return problems


def _spoken_prompts(config: Config) -> Iterator[tuple[Where, str]]:
    """The prompts of the file that are text to speak, with where each is written."""
    for i, menu in enumerate(config.ivrs):
        if menu.greeting.text is not None:
            yield ("ivrs", i, "greeting"), menu.greeting.text
    for i, announcement in enumerate(config.announcements):
        if announcement.text is not None:
            yield ("announcements", i, "text"), announcement.text
    for i, entry in enumerate(config.blacklist):
        if entry.message is not None and entry.message.text is not None:
            yield ("blacklist", i, "message"), entry.message.text
