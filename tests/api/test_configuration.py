"""Configuration through the API (/config/{kind}, /tenants): the same items as the
file, checked as a whole before anything is written, taken up by the PBX at once."""

from __future__ import annotations

from ipbx.pbx.destination import Kind
from tests.support.apiclient import Api

TRUNK = {"name": "carrier", "host": ["127.0.0.1:5098"]}
ROUTE = {"name": "intl", "pattern": "_00X.", "strip": 2, "prepend": "+", "trunks": ["carrier"]}
GROUP = {"name": "sales", "members": ["1000", "1001"], "strategy": "sequential"}


def test_a_trunk_and_a_route_are_added_and_used_at_once(api: Api) -> None:
    created = api.client.post("/config/trunks", json=TRUNK, headers=api.headers())
    assert created.status_code == 201, created.text
    assert created.json()["host"] == ["127.0.0.1:5098"]
    put = api.client.put("/config/outbound_routes/intl", json=ROUTE, headers=api.headers())
    assert put.status_code == 200, put.text
    assert api.pbx.trunks.get("carrier") is not None
    route = api.pbx.dialplan.route("0044207946", "international")
    assert route is not None and route.route == "intl"
    listed = api.client.get("/config/trunks", headers=api.headers()).json()
    assert [t["name"] for t in listed["items"]] == ["provider", "carrier"]
    whole = api.client.get("/config", headers=api.headers()).json()
    assert whole["outbound_routes"][0]["pattern"] == "_00X."
    one = api.client.get("/config/outbound_routes/intl", headers=api.headers())
    assert one.json()["trunks"] == ["carrier"]
    again = api.client.put("/config/outbound_routes/intl", json=ROUTE, headers=api.headers())
    assert again.status_code == 200
    assert [(r.kind, r.key) for r in api.store.provisioned()] == [
        ("trunks", "carrier"),
        ("outbound_routes", "intl"),
    ]


def test_a_change_that_would_break_the_configuration_is_refused_by_field(api: Api) -> None:
    orphan = {**ROUTE, "trunks": ["carrier", "nowhere"]}
    assert api.client.post("/config/trunks", json=TRUNK, headers=api.headers()).status_code == 201
    refused = api.client.post("/config/outbound_routes", json=orphan, headers=api.headers())
    assert refused.status_code == 422
    assert refused.json()["detail"] == "trunks[1]: no trunk named nowhere"
    bad_member = api.client.post(
        "/config/groups", json={**GROUP, "members": ["1000", "1999"]}, headers=api.headers()
    )
    assert bad_member.status_code == 422
    assert bad_member.json()["detail"] == "members[1]: there is no extension 1999"
    wrong_type = api.client.post(
        "/config/groups", json={**GROUP, "ring_seconds": "long"}, headers=api.headers()
    )
    assert wrong_type.status_code == 422 and "ring_seconds" in wrong_type.text
    assert api.client.post("/config/outbound_routes", json=ROUTE, headers=api.headers()).is_success
    in_use = api.client.delete("/config/trunks/carrier", headers=api.headers())
    assert in_use.status_code == 409
    assert in_use.json()["detail"] == "outbound_routes/intl.trunks[0]: no trunk named carrier"
    from_file = api.client.delete("/config/trunks/provider", headers=api.headers())
    assert from_file.status_code == 409 and "configuration file" in from_file.json()["detail"]
    mismatch = api.client.put("/config/trunks/other", json=TRUNK, headers=api.headers())
    assert mismatch.status_code == 422 and mismatch.json()["detail"].startswith("name:")
    taken = api.client.post("/config/trunks", json=TRUNK, headers=api.headers())
    assert taken.status_code == 409 and taken.json()["detail"].startswith("name:")
    missing = api.client.get("/config/groups/nothing", headers=api.headers())
    assert missing.status_code == 404 and missing.json()["detail"].startswith("name:")
    assert [(r.kind, r.key) for r in api.store.provisioned()] == [
        ("trunks", "carrier"),
        ("outbound_routes", "intl"),
    ]


def test_a_number_to_a_new_group_rings_it_and_removal_undoes_both(api: Api) -> None:
    number = {"number": "+15551230000", "destination": "group:sales"}
    early = api.client.post("/config/numbers", json=number, headers=api.headers())
    assert early.status_code == 422
    assert early.json()["detail"] == "destination: group:sales: there is no group named sales"
    assert api.client.post("/config/groups", json=GROUP, headers=api.headers()).status_code == 201
    assert api.client.post("/config/numbers", json=number, headers=api.headers()).status_code == 201
    found = api.pbx.numbers.lookup("+15551230000")
    assert found is not None and found.destination.kind is Kind.GROUP
    assert api.pbx.router is not None and "sales" in api.pbx.router.groups
    still_used = api.client.delete("/config/groups/sales", headers=api.headers())
    assert still_used.status_code == 409 and "numbers/+15551230000" in still_used.text
    gone = api.client.delete("/config/numbers/+15551230000", headers=api.headers())
    assert gone.status_code == 204
    assert api.client.delete("/config/groups/sales", headers=api.headers()).status_code == 204
    assert api.pbx.numbers.lookup("+15551230000") is None
    assert api.store.provisioned() == []


def test_a_queue_is_provisioned_checked_and_kept_while_a_number_uses_it(api: Api) -> None:
    queue = {"name": "support", "strategy": "leastrecent", "agents": ["1000", "1001"]}
    unknown = api.client.post(
        "/config/queues", json={**queue, "agents": ["1000", "1999"]}, headers=api.headers()
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == "agents[1]: there is no extension 1999"
    assert api.client.post("/config/queues", json=queue, headers=api.headers()).status_code == 201
    number = {"number": "600", "destination": "queue:support"}
    assert api.client.post("/config/numbers", json=number, headers=api.headers()).is_success
    status = api.pbx.queues.status("support")
    assert [a.extension for a in status.agents] == ["1000", "1001"]
    still_used = api.client.delete("/config/queues/support", headers=api.headers())
    assert still_used.status_code == 409 and "numbers/600" in still_used.text
    assert api.client.delete("/config/numbers/600", headers=api.headers()).status_code == 204
    assert api.client.delete("/config/queues/support", headers=api.headers()).status_code == 204
    assert "support" not in api.pbx.queues.queues


def test_scopes_and_tenants(api: Api) -> None:
    read_only = api.client.post("/config/groups", json=GROUP, headers=api.headers(api.reader))
    assert read_only.status_code == 403
    theirs = api.headers(api.other_tenant)
    assert api.client.get("/config/trunks", headers=theirs).json()["items"] == []
    routing = api.client.post("/config/groups", json=GROUP, headers=theirs)
    assert routing.status_code == 403 and "default tenant" in routing.json()["detail"]
    hook = {"url": "http://127.0.0.1:9/crm", "events": ["call.*"], "secret": "s" * 16}
    mine = api.client.post("/config/webhooks", json=hook, headers=theirs)
    assert mine.status_code == 201 and mine.json()["tenant"] == "acme"
    foreign = api.client.post(
        "/config/webhooks", json={**hook, "tenant": "default"}, headers=theirs
    )
    assert foreign.status_code == 422 and foreign.json()["detail"].startswith("tenant:")
    assert api.client.get("/config/webhooks", headers=api.headers()).json()["items"] == []
    assert [w.tenant for w in api.pbx.config.webhooks] == ["acme"]
    hidden = api.client.get("/config/webhooks/http://127.0.0.1:9/crm", headers=api.headers())
    assert hidden.status_code == 404


def test_tenants_are_created_given_tokens_and_removed_when_empty(api: Api) -> None:
    created = api.client.put(
        "/tenants/shop", json={"id": "shop", "name": "Shop Ltd"}, headers=api.headers()
    )
    assert created.status_code == 201
    renamed = api.client.put(
        "/tenants/shop", json={"id": "shop", "name": "The Shop"}, headers=api.headers()
    )
    assert renamed.status_code == 200
    issued = api.client.post("/tenants/shop/tokens", json={"scope": "admin"}, headers=api.headers())
    assert issued.status_code == 201
    shop = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert [t["id"] for t in api.client.get("/tenants", headers=shop).json()["items"]] == ["shop"]
    assert api.client.put("/tenants/x", json={"id": "x"}, headers=shop).status_code == 403
    in_use = api.client.delete("/tenants/shop", headers=api.headers())
    assert in_use.status_code == 409 and "API tokens" in in_use.json()["detail"]
    assert api.client.delete("/tenants/default", headers=api.headers()).status_code == 409
    assert api.client.delete("/tenants/nobody", headers=api.headers()).status_code == 404
    bad = api.client.put("/tenants/Bad_Id", json={"id": "Bad_Id"}, headers=api.headers())
    assert bad.status_code == 422 and "tenant" in bad.text
    api.client.put("/tenants/empty", json={"id": "empty"}, headers=api.headers())
    assert api.client.delete("/tenants/empty", headers=api.headers()).status_code == 204
    assert "empty" not in [t.id for t in api.store.tenants()]


def test_an_extension_with_its_settings_is_provisioned_without_keeping_its_password(
    api: Api,
) -> None:
    carol = {
        "number": "1002",
        "name": "Carol",
        "password": "secret1002",
        "voicemail": {"pin": "4321"},
        "forward": {"busy": "1001", "no_answer": "voicemail:1002", "no_answer_seconds": 15},
        "record": "always",
    }
    no_password = {key: value for key, value in carol.items() if key != "password"}
    new_without = api.client.post("/config/extensions", json=no_password, headers=api.headers())
    assert new_without.status_code == 422
    assert new_without.json()["detail"].startswith("password:")
    created = api.client.post("/config/extensions", json=carol, headers=api.headers())
    assert created.status_code == 201, created.text
    assert "password" not in created.json()
    assert created.json()["forward"]["busy"] == "extension:1001"  # bare digits: that extension
    digests = api.store.get_extension("1002")
    assert digests is not None and api.pbx.directory.get("1002") == digests
    assert "secret1002" not in str(api.store.provisioned())
    assert api.pbx.mailboxes.get("1002") is not None
    assert "1002" in api.pbx.calls.policy.record_always
    router = api.pbx.router
    assert router is not None and router.handling.no_answer_seconds("1002") == 15
    renamed = api.client.put(
        "/config/extensions/1002", json={**no_password, "name": "Carol B"}, headers=api.headers()
    )
    assert renamed.status_code == 200, renamed.text
    kept = api.store.get_extension("1002")
    assert kept is not None and kept.name == "Carol B" and kept.ha1_md5 == digests.ha1_md5
    listed = api.client.get("/config/extensions", headers=api.headers()).json()["items"]
    assert [e["number"] for e in listed] == ["1000", "1001", "1002"]
    assert all("password" not in e for e in listed)
    assert api.client.post("/config/groups", json={**GROUP, "members": ["1002"]},
                           headers=api.headers()).status_code == 201  # fmt: skip
    member = api.client.delete("/extensions/1002", headers=api.headers())
    assert member.status_code == 409 and member.json()["detail"].startswith("groups/sales")
    assert api.client.delete("/config/groups/sales", headers=api.headers()).status_code == 204
    assert api.client.delete("/extensions/1002", headers=api.headers()).status_code == 204
    assert api.store.get_extension("1002") is None and api.store.provisioned() == []
    assert api.pbx.mailboxes.get("1002") is None
