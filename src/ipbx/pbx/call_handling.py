"""An extension's own call handling: what its settings do with a call for it, however
the call reaches it (dialled, a DID, a menu, a group, a forward, a transfer). Its
blacklist turns the caller away; do-not-disturb makes it busy; forwarding (always, busy,
no answer, unregistered) and voicemail take the calls its phones do not.
"""

from __future__ import annotations

import logging

from ipbx.pbx.blacklist import Blacklist, BlacklistEntry
from ipbx.pbx.call.model import Call
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.extension import Extension
from ipbx.pbx.features import ExtensionSettings

log = logging.getLogger("ipbx.router")

# What the phones' refusal means for forwarding: nobody picked up (a ring time-out is
# our own CANCEL: 487), or busy.
_NO_ANSWER = frozenset({408, 480, 487})
_BUSY = frozenset({486, 600, 603})
BUSY = 486


class CallHandling:
    def __init__(
        self, extensions: dict[str, Extension], blacklist: Blacklist, settings: ExtensionSettings
    ) -> None:
        self.extensions = extensions
        self.blacklist = blacklist
        # What the phones set with feature codes (forwarding, do-not-disturb).
        self.settings = settings

    def refused_by(self, extension: str, call: Call) -> BlacklistEntry | None:
        """The entry of `extension`'s own blacklist that names the caller, if any."""
        refused = self.blacklist.match(call.from_number, extension)
        if refused is None or refused.extension != extension:
            return None
        log.info("%s: %s is blacklisted by %s (%s)",
                 call.id, call.from_number, extension, refused.pattern)  # fmt: skip
        return refused

    def on_dnd(self, extension: str) -> bool:
        """Whether `extension` is on do-not-disturb (its feature code's setting, else its
        configuration's)."""
        ext = self.extensions.get(extension)
        dnd = self.settings.dnd(extension)
        return dnd if dnd is not None else ext is not None and ext.dnd

    def before_ringing(self, extension: str, registered: bool) -> Destination | int | None:
        """Where a call to `extension` goes instead of its phones: forwarded always,
        busy when on do-not-disturb (486 when it has nowhere to go), the unregistered
        target when no phone is there."""
        ext = self.extensions.get(extension)
        if ext is None:
            return None
        forward = ext.forward
        always = self.settings.forward(extension)
        if always is None:
            always = forward.always
        if isinstance(always, Destination):
            return always
        if self.on_dnd(extension):
            return forward.busy or self._voicemail_of(ext) or BUSY
        if not registered:
            return forward.unregistered or forward.no_answer or self._voicemail_of(ext)
        return None

    def no_answer_seconds(self, extension: str) -> float | None:
        """How long the phones ring before the call goes to the no-answer target."""
        ext = self.extensions.get(extension)
        if ext is None or (ext.forward.no_answer is None and ext.voicemail is None):
            return None
        return float(ext.forward.no_answer_seconds)

    def after_failure(self, extension: str, status: int) -> Destination | None:
        """Where an unanswered call to `extension` goes: busy or no-answer forwarding,
        else the extension's voicemail."""
        ext = self.extensions.get(extension)
        if ext is None:
            return None
        if status in _BUSY:
            return ext.forward.busy or self._voicemail_of(ext)
        if status in _NO_ANSWER:
            return ext.forward.no_answer or self._voicemail_of(ext)
        return None

    def _voicemail_of(self, ext: Extension) -> Destination | None:
        return Destination(Kind.VOICEMAIL, ext.number) if ext.voicemail is not None else None
