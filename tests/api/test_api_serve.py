"""`ipbx serve` runs the API beside SIP: a token made with `ipbx token create` reads the
call records over HTTP on the configured port, and the server stops cleanly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.support.ports import LOOPBACK, free_port
from tests.support.server import make_token, run_ipbx, write_config


def test_token_create_prints_a_token_that_is_stored_only_hashed(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, free_port("tcp"))
    token = make_token(config, "admin")
    assert token.startswith("ipbx_") and len(token) == 66
    secret = token.rsplit("_", 1)[1]
    database = sqlite3.connect(tmp_path / "data" / "ipbx.db")
    rows = database.execute("SELECT key_id, scope, salt, digest FROM api_tokens").fetchall()
    database.close()
    assert len(rows) == 1 and rows[0][1] == "admin" and token.split("_")[1] == rows[0][0]
    assert secret not in " ".join(rows[0])
    for dump in (tmp_path / "data").glob("ipbx.db*"):
        assert secret.encode() not in dump.read_bytes()


def test_a_running_server_answers_authenticated_requests(tmp_path: Path) -> None:
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port)
    token = make_token(config, "read")
    server = run_ipbx(tmp_path, config, port)
    try:
        base = f"http://{LOOPBACK}:{api_port}"
        calls = httpx.get(f"{base}/calls", headers={"Authorization": f"Bearer {token}"})
        assert calls.status_code == 200
        assert calls.json() == {"total": 0, "limit": 50, "offset": 0, "items": []}
        extensions = httpx.get(f"{base}/extensions", headers={"Authorization": f"Bearer {token}"})
        assert [e["number"] for e in extensions.json()["items"]] == ["1000"]
        assert httpx.get(f"{base}/calls").status_code == 401
        assert httpx.get(f"{base}/openapi.json").status_code == 200
    finally:
        code = server.stop()
    log = server.log_tail(200)
    assert code == 0, log
    assert "Traceback" not in log
    assert f"API on http://{LOOPBACK}:{api_port}" in log
