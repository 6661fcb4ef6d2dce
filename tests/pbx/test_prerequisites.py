"""At start the server names each setting that needs a program or library the machine
lacks, at the file and line it is written on: text prompts need espeak-ng, G.729 needs
libbcg729."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipbx.config import load_config
from ipbx.media import tts
from ipbx.media.codecs import G722, PCMU
from ipbx.pbx import prerequisites

CONFIG = """\
extensions:
  - {number: "1000", name: Alice, password: secret1000}
media:
  codecs: [pcmu, g729]
ivrs:
  - name: main
    greeting: "Welcome. For sales press 1."
    options: {"1": "extension:1000"}
  - {name: quiet, greeting: "file:PROMPT"}
announcements:
  - {name: closed, text: "We are closed."}
blacklist:
  - {pattern: "+1555*", message: "Your calls are blocked."}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    prompt = tmp_path / "welcome.wav"
    prompt.write_bytes(b"")
    path = tmp_path / "ipbx.yaml"
    path.write_text(CONFIG.replace("PROMPT", str(prompt)))
    return path


def test_without_espeak_and_libbcg729_each_setting_is_named_with_its_line(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tts, "available", lambda: False)
    monkeypatch.setattr(prerequisites, "CODECS", (PCMU, G722))
    problems = prerequisites.missing(load_config(config_file), config_file)
    assert problems == [
        "espeak-ng is not installed (Debian package espeak-ng): spoken prompts are "
        "skipped, menus still take digits",
        f"{config_file}:7: ivrs[0].greeting: 'Welcome. For sales press 1.' needs espeak-ng; "
        "it will be skipped",
        f"{config_file}:11: announcements[0].text: 'We are closed.' needs espeak-ng; "
        "it will be skipped",
        f"{config_file}:13: blacklist[0].message: 'Your calls are blocked.' needs espeak-ng; "
        "it will be skipped",
        f"{config_file}:4: media.codecs[1]: g729 needs libbcg729 (Debian package "
        "libbcg729-0); G.729 is left out",
    ]


def test_the_embedded_default_names_the_default_codecs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(prerequisites, "CODECS", (PCMU, G722))
    assert prerequisites.missing(load_config(None), None)[-1] == (
        "media.codecs (default): g729 needs libbcg729 (Debian package libbcg729-0); "
        "G.729 is left out"
    )


def test_a_machine_with_both_has_nothing_to_say(config_file: Path) -> None:
    """This machine has what `make serve` installs."""
    assert prerequisites.missing(load_config(config_file), config_file) == []
