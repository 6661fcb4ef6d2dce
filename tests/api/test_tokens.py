"""Token listing and revocation: GET /tokens shows a tenant's tokens without their
secrets, DELETE /tokens/{key_id} revokes one of the tenant's own, and `ipbx token
list|revoke` do the same from the command line; a revoked token gets 401 at once, also
from a server that is already running."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ipbx.cli import main
from tests.support.apiclient import Api
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import make_token, run_ipbx, write_config


def key_id(token: str) -> str:
    return token.split("_")[1]


def test_a_tenant_lists_its_own_tokens_and_never_a_secret(api: Api) -> None:
    listed = api.client.get("/tokens", headers=api.headers())
    assert listed.status_code == 200
    body = listed.json()
    assert body["total"] == 2
    assert [t["key_id"] for t in body["items"]] == [key_id(api.admin), key_id(api.reader)]
    assert [t["scope"] for t in body["items"]] == ["admin", "read"]
    assert set(body["items"][0]) == {"key_id", "scope", "name", "created"}
    for token in (api.admin, api.reader):
        assert token.rsplit("_", 1)[1] not in listed.text
    record = api.store.api_token(key_id(api.admin))
    assert record is not None and record.digest not in listed.text
    assert record.salt not in listed.text

    acme = api.client.get("/tokens", headers=api.headers(api.other_tenant)).json()
    assert [t["key_id"] for t in acme["items"]] == [key_id(api.other_tenant)]
    assert api.client.get("/tokens", headers=api.headers(api.reader)).status_code == 403
    assert api.client.get("/tokens").status_code == 401


def test_a_revoked_token_is_refused_from_the_next_request(api: Api) -> None:
    assert api.client.get("/extensions", headers=api.headers(api.reader)).status_code == 200
    revoked = api.client.delete(f"/tokens/{key_id(api.reader)}", headers=api.headers())
    assert revoked.status_code == 204
    after = api.client.get("/extensions", headers=api.headers(api.reader))
    assert after.status_code == 401
    assert after.json() == {"detail": "invalid or revoked API token"}
    assert [
        t["key_id"] for t in api.client.get("/tokens", headers=api.headers()).json()["items"]
    ] == [key_id(api.admin)]
    again = api.client.delete(f"/tokens/{key_id(api.reader)}", headers=api.headers())
    assert again.status_code == 404
    assert again.json() == {"detail": f"key_id: no token {key_id(api.reader)}"}


def test_another_tenants_token_cannot_be_revoked(api: Api) -> None:
    other = key_id(api.other_tenant)
    refused = api.client.delete(f"/tokens/{other}", headers=api.headers())
    assert refused.status_code == 404
    assert refused.json()["detail"].startswith("key_id:")
    assert api.client.get("/tokens", headers=api.headers(api.other_tenant)).status_code == 200
    assert api.client.delete(f"/tokens/{other}", headers=api.headers(api.reader)).status_code == 403
    assert api.client.delete("/tokens/XYZ", headers=api.headers()).status_code == 422


def test_an_admin_may_revoke_its_own_token(api: Api) -> None:
    assert (
        api.client.delete(f"/tokens/{key_id(api.admin)}", headers=api.headers()).status_code == 204
    )
    assert api.client.get("/tokens", headers=api.headers()).status_code == 401


def test_the_cli_lists_and_revokes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ipbx.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    assert main(["token", "create", "--config", str(config), "--scope", "read",
                 "--name", "crm"]) == 0  # fmt: skip
    reader = capsys.readouterr().out.strip()
    assert main(["token", "create", "--config", str(config), "--scope", "admin",
                 "--tenant", "acme"]) == 0  # fmt: skip
    other = capsys.readouterr().out.strip()

    assert main(["token", "list", "--config", str(config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{key_id(reader)}  default  read ") and lines[0].endswith("crm")
    assert lines[1].startswith(f"{key_id(other)}  acme  admin")
    assert reader.rsplit("_", 1)[1] not in "".join(lines)
    assert main(["token", "list", "--config", str(config), "--tenant", "acme"]) == 0
    assert capsys.readouterr().out.split()[0] == key_id(other)

    assert main(["token", "revoke", key_id(reader), "--config", str(config)]) == 0
    assert main(["token", "revoke", key_id(reader), "--config", str(config)]) == 1
    assert f"key_id: no API token {key_id(reader)}" in capsys.readouterr().err
    assert main(["token", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.split()[0] == key_id(other)


def test_revoking_with_the_cli_locks_out_a_running_servers_client(tmp_path: Path) -> None:
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port)
    token = make_token(config, "read")
    headers = {"Authorization": f"Bearer {token}"}
    server = run_ipbx(tmp_path, config, port)
    try:
        base = f"http://{LOOPBACK}:{api_port}"
        assert httpx.get(f"{base}/extensions", headers=headers).status_code == 200
        assert main(["token", "revoke", key_id(token), "--config", str(config)]) == 0
        assert httpx.get(f"{base}/extensions", headers=headers).status_code == 401
    finally:
        code = server.stop()
    assert code == 0, server.log_tail(200)
