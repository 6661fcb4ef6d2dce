"""The softphone page's server side: /phone names the SIP WebSocket listener to connect
to, and /phone/history gives an extension its own calls for its SIP password, no other
extension's or tenant's, and bans a source that keeps guessing."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipbx.config import Config, ListenAddress, SipConfig
from ipbx.pbx.extension import Extension
from ipbx.store import CallRecord
from ipbx.web.phone import websocket_url
from tests.support.apiclient import Api, serve_api


@pytest.fixture
def web(tmp_path: Path) -> Iterator[Api]:
    config = Config(
        data_dir=tmp_path / "data",
        sip=SipConfig(ban_failures=3),
        extensions=[
            Extension(number="1000", name="Alice", password="secret1000"),
            Extension(number="1001", name="Bob", password="secret1001"),
        ],
    )
    yield from serve_api(config)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_the_page_connects_to_the_websocket_listener_at_the_host_it_came_from(web: Api) -> None:
    page = web.client.get("/phone")
    assert page.status_code == 200
    # The default wss://0.0.0.0:8089 is reached at the host the page was loaded from.
    assert 'data-websocket="wss://testserver:8089"' in page.text
    for label in ("Extension", "Password", "Number"):
        assert f">{label}</label>" in page.text
    assert '<script src="/static/jssip.min.js">' in page.text
    assert web.client.get("/static/jssip.min.js").status_code == 200


def test_the_websocket_url_prefers_wss_and_a_bound_address() -> None:
    def url(*listen: str, host: str = "pbx.example.com") -> str | None:
        return websocket_url([ListenAddress.model_validate(a) for a in listen], host)

    assert url("udp://0.0.0.0:5060", "ws://0.0.0.0:8088", "wss://0.0.0.0:8089") == (
        "wss://pbx.example.com:8089"
    )
    assert url("ws://10.0.0.5:8088") == "ws://10.0.0.5:8088"
    assert url("wss://[::]:8089", host="::1") == "wss://[::1]:8089"
    assert url("udp://0.0.0.0:5060") is None


def test_an_extension_reads_its_own_calls_with_its_sip_password(web: Api) -> None:
    web.store.save_call_records(
        [
            CallRecord("mine", "1000", "1001", 100.0, 130.0, "answered", 102.0),
            CallRecord("theirs", "1001", "1002", 200.0, 210.0, "no_answer", None),
            CallRecord("called", "1001", "1000", 300.0, 310.0, "no_answer", None),
        ]
    )
    web.store.save_call_records(
        [CallRecord("acme", "1000", "1001", 400.0, 410.0, "answered", 401.0)], tenant="acme"
    )
    client = web.client
    assert client.get("/phone/history").status_code == 401
    assert client.get("/phone/history", headers=basic("1000", "secret1001")).status_code == 401
    assert client.get("/phone/history", headers=basic("1009", "secret1009")).status_code == 401
    answer = client.get("/phone/history", headers=basic("1000", "secret1000"))
    assert answer.status_code == 200
    found = answer.json()
    assert (found["extension"], found["name"]) == ("1000", "Alice")
    assert [(c["caller"], c["callee"], c["result"]) for c in found["calls"]] == [
        ("1001", "1000", "no_answer"),
        ("1000", "1001", "answered"),
    ]
    assert found["calls"][1]["duration"] == 28.0


def test_a_source_that_keeps_guessing_is_banned(web: Api) -> None:
    client = web.client
    for guess in ("a", "b", "c"):
        assert client.get("/phone/history", headers=basic("1000", guess)).status_code == 401
    # Banned: even the right password is refused for now.
    assert client.get("/phone/history", headers=basic("1000", "secret1000")).status_code == 429
