"""Registrations: saved per AOR, survive a restart, expire."""

import pytest

from ipbx.store import BindingRecord, Store, UnknownTenantError

NOW = 1_700_000_000.0


def binding(aor: str, contact: str, expires_at: float = NOW + 3600, cseq: int = 1) -> BindingRecord:
    return BindingRecord(
        aor=aor,
        contact_uri=contact,
        expires_at=expires_at,
        call_id="a84b4c76e66710@pc33.example.com",
        cseq=cseq,
        transport="udp",
        host="192.0.2.4",
        port=5060,
        instance_id="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
        user_agent="baresip v1.0.0",
        q=0.7,
    )


def test_bindings_survive_reopening_the_store(store: Store, store_url: str) -> None:
    saved = [binding("1000", "sip:1000@192.0.2.4:5060"), binding("1000", "sip:1000@198.51.100.7")]
    store.save_bindings({"1000": saved})
    store.close()

    reopened = Store(store_url)
    reopened.migrate()
    assert reopened.load_bindings(NOW) == saved
    reopened.close()


def test_saving_replaces_the_aors_whole_set(store: Store) -> None:
    store.save_bindings({"1000": [binding("1000", "sip:a"), binding("1000", "sip:b")]})
    store.save_bindings({"1001": [binding("1001", "sip:c")]})
    store.save_bindings({"1000": [binding("1000", "sip:b", cseq=2)]})
    assert store.load_bindings(NOW) == [binding("1000", "sip:b", cseq=2), binding("1001", "sip:c")]


def test_saving_an_empty_set_removes_all(store: Store) -> None:
    store.save_bindings({"1000": [binding("1000", "sip:a")]})
    store.save_bindings({"1000": []})
    assert store.load_bindings(NOW) == []


def test_delete_one_binding(store: Store) -> None:
    store.save_bindings({"1000": [binding("1000", "sip:a"), binding("1000", "sip:b")]})
    store.delete_binding("1000", "sip:a")
    assert [b.contact_uri for b in store.load_bindings(NOW)] == ["sip:b"]


def test_expired_bindings_are_dropped_on_load(store: Store) -> None:
    store.save_bindings(
        {"1000": [binding("1000", "sip:old", expires_at=NOW - 1), binding("1000", "sip:new")]}
    )
    assert [b.contact_uri for b in store.load_bindings(NOW)] == ["sip:new"]
    assert [b.contact_uri for b in store.load_bindings(NOW - 10)] == ["sip:new"]


def test_bindings_of_another_tenant_are_apart(store: Store) -> None:
    store.apply_extensions([("1000", "Zoe", "zoezoe")], realm="acme", tenant="acme.example")
    store.save_bindings({"1000": [binding("1000", "sip:acme")]}, tenant="acme.example")
    store.save_bindings({"1000": [binding("1000", "sip:default")]})
    assert [b.contact_uri for b in store.load_bindings(NOW)] == ["sip:default"]
    assert [b.contact_uri for b in store.load_bindings(NOW, tenant="acme.example")] == ["sip:acme"]


def test_an_unknown_tenant_is_refused(store: Store) -> None:
    with pytest.raises(UnknownTenantError):
        store.save_bindings({"1000": []}, tenant="nobody.example")


def test_a_binding_saved_under_another_aor_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="1001"):
        store.save_bindings({"1000": [binding("1001", "sip:a")]})
