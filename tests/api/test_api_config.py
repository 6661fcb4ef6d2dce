"""The `api:` and `webhooks:` sections of the configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipbx.config import load_config
from ipbx.configfile import ConfigError


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "ipbx.yaml"
    path.write_text(text)
    return load_config(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_the_api_listens_on_loopback_8080_by_default(tmp_path: Path) -> None:
    config = load(tmp_path, "{}")
    assert config.api.listen == "127.0.0.1:8080"  # type: ignore[attr-defined]
    assert (config.api.host, config.api.port) == ("127.0.0.1", 8080)  # type: ignore[attr-defined]
    assert config.webhooks == []  # type: ignore[attr-defined]


def test_api_listen_and_webhooks_are_read(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
api:
  listen: "[::1]:9000"
webhooks:
  - url: https://crm.example.com/ipbx
    events: [call.*, voicemail.new]
    secret: 0123456789abcdef
    tenant: acme
""",
    )
    assert (config.api.host, config.api.port) == ("::1", 9000)  # type: ignore[attr-defined]
    hook = config.webhooks[0]  # type: ignore[attr-defined]
    assert hook.events == ["call.*", "voicemail.new"] and hook.tenant == "acme"
    assert "0123456789abcdef" not in repr(hook)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api:\n  listen: localhost\n", "ipbx.yaml:2: api.listen: 'localhost': "
         "expected HOST:PORT"),
        ("api:\n  listen: 1.2.3.4:99999\n",
         "ipbx.yaml:2: api.listen: '1.2.3.4:99999': port must be 1-65535"),
        ("webhooks:\n  - {url: ftp://x/y, events: [call.*], secret: 0123456789abcdef}\n",
         "ipbx.yaml:2: webhooks[0].url: 'ftp://x/y': expected an http"),
        ("webhooks:\n  - {url: http://x/y, events: [], secret: 0123456789abcdef}\n",
         "ipbx.yaml:2: webhooks[0].events: List should have at least 1 item"),
        ("webhooks:\n  - {url: http://x/y, events: [call.*], secret: short}\n",
         "ipbx.yaml:2: webhooks[0].secret: String should have at least 16 characters"),
        ("webhooks:\n  - {url: http://x/y, events: [call.*], secret: 0123456789abcdef}\n"
         "  - {url: http://x/y, events: [voicemail.new], secret: 0123456789abcdef}\n",
         "ipbx.yaml:3: webhooks[1].url: http://x/y is already subscribed for tenant default"),
    ],
)  # fmt: skip
def test_bad_api_and_webhook_settings_name_the_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    assert message in error(tmp_path, text)
