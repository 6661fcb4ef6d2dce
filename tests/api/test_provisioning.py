"""Provisioning extensions: through the API (create, refuse a taken number or a bad
field by name, delete), and `ipbx apply FILE`, which is idempotent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ipbx.config import load_config
from ipbx.pbx.provisioning import effective
from ipbx.store import Store
from tests.support.apiclient import Api

PHONE = {"number": "1005", "name": "Eve", "password": "secret1005"}


def test_an_extension_created_through_the_api_can_register_at_once(api: Api) -> None:
    created = api.client.post("/extensions", json=PHONE, headers=api.headers())
    assert created.status_code == 201, created.text
    assert created.json() == {"number": "1005", "name": "Eve", "registered": False, "contacts": 0}
    assert api.pbx.directory.get("1005") is not None  # what REGISTER and INVITE look up
    listed = api.client.get("/extensions", headers=api.headers(api.reader)).json()
    assert [e["number"] for e in listed["items"]] == ["1000", "1001", "1005"]


def test_bad_or_duplicate_extensions_are_refused_by_field_and_nothing_is_written(
    api: Api,
) -> None:
    for body, field in (
        ({**PHONE, "number": "12a"}, "number"),
        ({**PHONE, "password": "x"}, "password"),
        ({**PHONE, "name": 7}, "name"),
    ):
        refused = api.client.post("/extensions", json=body, headers=api.headers())
        assert refused.status_code == 422 and field in refused.text, refused.text
    taken = api.client.post("/extensions", json={**PHONE, "number": "1000"}, headers=api.headers())
    assert taken.status_code == 409 and taken.json()["detail"].startswith("number:")
    read_only = api.client.post("/extensions", json=PHONE, headers=api.headers(api.reader))
    assert read_only.status_code == 403
    assert [e.number for e in api.store.list_extensions()] == ["1000", "1001"]


def test_deleting_an_extension_and_another_tenants_view(api: Api) -> None:
    assert api.client.post("/extensions", json=PHONE, headers=api.headers()).status_code == 201
    theirs = api.client.get("/extensions", headers=api.headers(api.other_tenant)).json()
    assert theirs["items"] == []
    assert api.client.delete("/extensions/1005", headers=api.headers()).status_code == 204
    gone = api.client.delete("/extensions/1005", headers=api.headers())
    assert gone.status_code == 404 and "number" in gone.json()["detail"]
    assert api.pbx.directory.get("1005") is None


def test_ipbx_apply_writes_extensions_and_items_once_and_refuses_a_bad_file(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ipbx.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "extensions:\n"
        '  - {number: "1000", name: Alice, password: secret1000}\n'
        '  - {number: "1001", name: Bob, password: secret1001}\n'
        "groups:\n"
        '  - {name: sales, members: ["1000", "1001"]}\n'
        "numbers:\n"
        '  - {number: "+15551230000", destination: "group:sales"}\n'
    )
    command = [sys.executable, "-m", "ipbx.cli", "apply", str(config)]
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    assert (
        "4 item(s); added extensions/1000, extensions/1001, numbers/+15551230000, groups/sales"
        in first.stdout
    )
    again = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "4 item(s); added none, changed none" in again.stdout
    good, text = load_config(config), config.read_text()
    config.write_text(text.replace("secret1001", "x"))
    bad = subprocess.run(command, capture_output=True, text=True)
    assert bad.returncode == 2
    assert "ipbx.yaml:4" in bad.stderr and "password" in bad.stderr
    config.write_text(text.replace("group:sales", "group:support"))
    unknown = subprocess.run(command, capture_output=True, text=True)
    assert unknown.returncode == 2 and "there is no group named support" in unknown.stderr
    # A server started on a file without the items runs with them.
    store = Store(good.store_url)
    try:
        running = effective(good.model_copy(update={"groups": [], "numbers": []}), store)
    finally:
        store.close()
    assert [g.name for g in running.groups] == ["sales"]
    assert [str(n.destination) for n in running.numbers] == ["group:sales"]
