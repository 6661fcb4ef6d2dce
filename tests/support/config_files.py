"""A configuration file written for a test, and the error loading it gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipbx.config import load_config
from ipbx.configfile import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ipbx.yaml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)
