"""Feature codes: what a phone dials to change its own call handling, and the settings
they change.

| code | what it does |
| --- | --- |
| `*78` / `*79` | do-not-disturb on / off |
| `*72NUMBER` (or `*72`, then the number and #) / `*73` | forward every call on / off |
| `*97` | the caller's own mailbox (PIN first) |
| `*8` | pick up the call ringing longest in the caller's pickup groups |
| `**EXT` | pick up the call ringing extension EXT (directed pickup) |
| `*45` / `*46` | a queue agent logs in to / out of all its queues (pbx/queue/) |
| `*47` | a queue agent pauses, or unpauses |

The do-not-disturb and forwarding settings override the configuration's `dnd` and
`forward.always` for the extension and survive restarts: they are kept in
`DATA_DIR/extension-settings.json`, replaced atomically on every change.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ipbx.pbx.destination import Destination, Kind

log = logging.getLogger("ipbx.features")

SETTINGS_FILE = "extension-settings.json"

DND_ON, DND_OFF = "*78", "*79"
FORWARD_ON, FORWARD_OFF = "*72", "*73"
MAILBOX = "*97"
PICKUP = "*8"
DIRECTED_PICKUP = "**"
AGENT_LOGIN, AGENT_LOGOUT, AGENT_PAUSE = "*45", "*46", "*47"
AGENT_CODES = (AGENT_LOGIN, AGENT_LOGOUT, AGENT_PAUSE)


@dataclass
class Setting:
    dnd: bool | None = None
    forward: str | None = None  # a Destination string; "" means switched off


class ExtensionSettings:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SETTINGS_FILE
        self._settings: dict[str, Setting] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raw = {}
        except (OSError, ValueError) as exc:
            log.error("%s is unreadable (%s); starting without feature-code settings",
                      self.path, exc)  # fmt: skip
            raw = {}
        for number, values in raw.items():
            if isinstance(values, dict):
                dnd, forward = values.get("dnd"), values.get("forward")
                self._settings[number] = Setting(
                    dnd if isinstance(dnd, bool) else None,
                    forward if isinstance(forward, str) else None,
                )

    def dnd(self, number: str) -> bool | None:
        setting = self._settings.get(number)
        return None if setting is None else setting.dnd

    def forward(self, number: str) -> Destination | bool | None:
        """The forwarding a feature code set: a Destination, False when switched off,
        None when no code was dialled (the configuration applies)."""
        setting = self._settings.get(number)
        if setting is None or setting.forward is None:
            return None
        return Destination.parse(setting.forward) if setting.forward else False

    def set_dnd(self, number: str, on: bool) -> None:
        self._settings.setdefault(number, Setting()).dnd = on
        self._save()

    def set_forward(self, number: str, target: Destination | None) -> None:
        self._settings.setdefault(number, Setting()).forward = str(target) if target else ""
        self._save()

    def _save(self) -> None:
        data = {
            number: {"dnd": s.dnd, "forward": s.forward} for number, s in self._settings.items()
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)


def forward_target(digits: str, is_extension: bool) -> Destination:
    """What `*72DIGITS` forwards to: the extension, or the outside number."""
    return Destination(Kind.EXTENSION if is_extension else Kind.NUMBER, digits)
