"""Debian's chromium driven by Playwright as a WebRTC phone: launched with a fake
microphone that plays a WAV, and probes evaluated in the page for what it hears (the
strongest frequency of the remote stream through a WebAudio analyser; the audio energy
of the inbound RTP stream from getStats())."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright

CHROMIUM = "/usr/bin/chromium"

# Playwright's pages keep every RTCPeerConnection they make in `peerConnections`, so a
# test can read getStats() of the one a page's SIP library made.
RECORD_PEER_CONNECTIONS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.peerConnections = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      window.peerConnections.push(this);
    }
  };
})();
"""

# The strongest frequency (Hz) of an <audio> element's remote stream over `ms` ms.
DOMINANT_HZ = """
async ([selector, ms]) => {
  const stream = document.querySelector(selector).srcObject;
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(stream).connect(analyser);
  await new Promise((done) => setTimeout(done, ms));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let best = 0;
  for (let i = 1; i < bins.length; i++) if (bins[i] > bins[best]) best = i;
  const hz = best * context.sampleRate / analyser.fftSize;
  await context.close();
  return hz;
}
"""

# The audio inbound-rtp statistics of the page's last RTCPeerConnection.
INBOUND_AUDIO = """
async () => {
  const stats = await window.peerConnections.at(-1).getStats();
  for (const report of stats.values()) {
    if (report.type === "inbound-rtp" && report.kind === "audio") {
      return { packets: report.packetsReceived, energy: report.totalAudioEnergy };
    }
  }
  return null;
}
"""


def require_chromium() -> None:
    # `make test` installs it (make peers); missing, the set-up is broken: not a skip.
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} not installed: run make peers")


def launch(playwright: Playwright, microphone: Path) -> Browser:
    """Chromium whose microphone plays `microphone` once (a WAV), granting pages the
    microphone without asking and trusting self-signed certificates (ipbx's wss://
    listener), as a user who accepted it."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}%noloop",
            "--ignore-certificate-errors",
            "--autoplay-policy=no-user-gesture-required",
        ],
    )


def new_phone_page(browser: Browser) -> Page:
    """A phone-sized page (375 px wide) in a context of its own (its own cookies and
    storage), allowed the microphone, recording its peer connections."""
    context = browser.new_context(
        permissions=["microphone"], viewport={"width": 375, "height": 740}
    )
    context.add_init_script(RECORD_PEER_CONNECTIONS)
    return context.new_page()


def dominant_hz(page: Page, ms: int = 1000) -> float:
    hz: float = page.evaluate(DOMINANT_HZ, ["#remote", ms])
    return hz


def inbound_audio(page: Page) -> dict[str, Any] | None:
    stats: dict[str, Any] | None = page.evaluate(INBOUND_AUDIO)
    return stats
