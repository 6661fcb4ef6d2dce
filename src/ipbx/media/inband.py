"""In-band DTMF: detect key presses in 8 kHz audio, and generate them.

Detection follows the usual ITU-T Q.24 receiver practice: the signal power at the
eight ITU-T Q.23 frequencies is measured with the Goertzel algorithm over 205-sample
blocks (25.6 ms, bins ~39 Hz wide, enough to separate 697 and 770 Hz); a block
holds a digit when one low-group and one high-group frequency carry most of its
energy (so speech and noise are not taken for digits), both are above a minimum
level, their level difference is within the twist limits and the pair has no strong
second harmonics (tones have none; voiced speech does). A digit is reported once
it has lasted the minimum duration and again only after the key was released.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ipbx.media.codecs.base import Pcm

RATE = 8000
# ITU-T Q.23: low (row) and high (column) group frequencies, in Hz.
LOW_GROUP = (697.0, 770.0, 852.0, 941.0)
HIGH_GROUP = (1209.0, 1336.0, 1477.0, 1633.0)
# ITU-T Q.23: the keypad, rows by low-group, columns by high-group frequency.
KEYPAD = ("123A", "456B", "789C", "*0#D")
# G.711 (μ-law): a sine at the coder's overload point is +3.17 dBm0, so 0 dBm0 is a
# sine whose RMS is 3.17 dB below that of a full-scale int16 sine.
_DBM0_RMS = 32768 / np.sqrt(2) / 10 ** (3.17 / 20)

_BLOCK = 205  # samples per Goertzel block: the classic N for 8 kHz DTMF receivers
_HOP = 40  # 5 ms between block starts
_FREQUENCIES = np.array(LOW_GROUP + HIGH_GROUP)
# The Goertzel recurrence s[n] = x[n] + 2cos(w)s[n-1] - s[n-2] ends with
# |X(w)|^2 = s1^2 + s2^2 - 2cos(w)s1s2, the power of the single DFT bin at w. numpy
# evaluates that same bin for all frequencies and blocks at once as a product with
# cos/sin bases, instead of a per-sample loop; the second harmonics ride along.
_ANGLES = 2 * np.pi * np.outer(np.arange(_BLOCK), np.concatenate([_FREQUENCIES, 2 * _FREQUENCIES]))
_COS = np.cos(_ANGLES / RATE)
_SIN = np.sin(_ANGLES / RATE)


class InbandError(ValueError):
    """An unknown DTMF digit."""


def dtmf_tone(
    digit: str, ms: int, level_dbm0: float = -7.0, twist_db: float = 2.0, rate: int = RATE
) -> Pcm:
    """The two-frequency tone for one key, `ms` long, at `rate`.

    `level_dbm0` is the low-group level; the high group is sent `twist_db` louder, as
    transmitters pre-emphasise it to offset the line's loss at higher frequencies
    (negative values make reverse twist).
    """
    row, col = _key(digit)
    t = np.arange(rate * ms // 1000) / rate
    low = _amplitude(level_dbm0) * np.sin(2 * np.pi * LOW_GROUP[row] * t)
    high = _amplitude(level_dbm0 + twist_db) * np.sin(2 * np.pi * HIGH_GROUP[col] * t)
    return np.clip(np.rint(low + high), -32768, 32767).astype(np.int16)


def _key(digit: str) -> tuple[int, int]:
    for row, keys in enumerate(KEYPAD):
        col = keys.find(digit.upper())
        if len(digit) == 1 and col >= 0:
            return row, col
    raise InbandError(f"not a DTMF digit: {digit!r}")


def _amplitude(level_dbm0: float) -> float:
    return float(_DBM0_RMS * np.sqrt(2) * 10 ** (level_dbm0 / 20))


@dataclass
class InbandDetector:
    """Streaming DTMF receiver: feed 8 kHz int16 audio in any chunking, get digits.

    Defaults follow Q.24 practice as most administrations set it: operate on tones of
    40 ms or more; accept up to 8 dB normal twist (high group louder) and 4 dB reverse
    twist (low group louder), the AT&T values; ignore tones below -30 dBm0 per
    frequency.
    """

    min_duration_ms: int = 40
    normal_twist_db: float = 8.0
    reverse_twist_db: float = 4.0
    min_level_dbm0: float = -30.0
    # Share of the block's energy the two tones must carry (1.0 for a clean tone).
    min_tone_share: float = 0.6
    # The tones' second harmonics must be this far below them (0 disables the check).
    harmonic_margin_db: float = 10.0
    # Silence (or another digit) this long releases the key; shorter dropouts are bridged.
    release_ms: int = 20
    # Starts as silence, so a tone at the very first sample gets its leading blocks too.
    _pending: Pcm = field(
        default_factory=lambda: np.zeros(_BLOCK - _HOP, dtype=np.int16), repr=False
    )
    _candidate: str | None = field(default=None, repr=False)
    _run: int = field(default=0, repr=False)
    _reported: str | None = field(default=None, repr=False)
    _gap: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        # A block also holds the digit when the tone covers only part of it, down to
        # min_tone_share of it at each end; so a tone of L samples is seen in about
        # (L + N - 2 x share x N) / hop consecutive blocks. Requiring that many for the
        # minimum duration rejects tones much shorter (20 ms gives half as many).
        span = RATE * self.min_duration_ms // 1000 + _BLOCK * (1 - 2 * self.min_tone_share)
        self._needed = max(1, int(span // _HOP))
        self._release = max(1, RATE * self.release_ms // 1000 // _HOP)
        # A bin's power is at most twice its block's mean square (Cauchy-Schwarz on the
        # DFT sum), so a block holds a tone at the floor only if its samples' squares sum
        # to N x floor / 2 or more; audio whose squares sum to less holds no digit at all.
        self._quiet_sum = _BLOCK * self._floor / 2

    @property
    def _floor(self) -> float:
        """The power of a tone at the minimum level."""
        return float((_DBM0_RMS * 10 ** (self.min_level_dbm0 / 20)) ** 2)

    def feed(self, pcm: Pcm) -> list[str]:
        """Add audio; return the digits whose key presses completed detection."""
        samples = np.concatenate([self._pending, np.asarray(pcm, dtype=np.int16)])
        count = 0 if samples.size < _BLOCK else (samples.size - _BLOCK) // _HOP + 1
        self._pending = samples[count * _HOP :]
        if count == 0:
            return []
        used = samples[: (count - 1) * _HOP + _BLOCK].astype(np.float32)
        if float(np.dot(used, used)) < self._quiet_sum:
            # Too quiet for any block to hold a tone at the minimum level: no Goertzel
            # (a waiting caller's line is quiet nearly all the time).
            blocks: list[str | None] = [None] * count
        else:
            windows = np.lib.stride_tricks.sliding_window_view(samples, _BLOCK)[::_HOP][:count]
            blocks = self.classify(windows)
        return [digit for block in blocks if (digit := self._step(block))]

    def classify(self, blocks: npt.NDArray[np.int16]) -> list[str | None]:
        """The digit each 205-sample block holds, if any (no duration rule applied)."""
        x = blocks.astype(np.float64)
        # Power per bin normalised so a full-block sine gives its mean square (A^2/2).
        power = ((x @ _COS) ** 2 + (x @ _SIN) ** 2) * (2 / _BLOCK**2)
        energy = np.mean(x**2, axis=1)
        row = np.argmax(power[:, :4], axis=1)
        col = np.argmax(power[:, 4:8], axis=1)
        index = np.arange(len(x))
        low = power[index, row]
        high = power[index, 4 + col]
        floor = self._floor
        twist = high / np.maximum(low, 1e-12)
        ok = (
            (low >= floor)
            & (high >= floor)
            & (low + high >= self.min_tone_share * energy)
            & (twist <= 10 ** (self.normal_twist_db / 10))
            & (twist >= 10 ** (-self.reverse_twist_db / 10))
        )
        if self.harmonic_margin_db > 0:
            # Summed over the pair: 2 x 697 = 1394 Hz lies 1.5 bins from 1336 Hz, so that
            # bin alone picks up the high tone's leakage (about -13.5 dB) on "2".
            harmonics = power[index, 8 + row] + power[index, 12 + col]
            ok &= harmonics <= 10 ** (-self.harmonic_margin_db / 10) * (low + high)
        return [KEYPAD[r][c] if hit else None for r, c, hit in zip(row, col, ok, strict=True)]

    def _step(self, digit: str | None) -> str | None:
        if digit is None or digit != self._candidate:
            self._candidate, self._run = digit, 0
        if digit == self._reported:
            self._gap = 0
        else:
            self._gap += 1
            if self._gap >= self._release:
                self._reported = None
        if digit is None:
            return None
        self._run += 1
        if self._run >= self._needed and self._reported is None:
            self._reported, self._gap = digit, 0
            return digit
        return None
