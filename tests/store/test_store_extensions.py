"""Provisioning extensions: only RFC 7616 HA1 hashes are stored, apply is idempotent."""

import hashlib

import sqlalchemy as sa

from ipbx.store import ExtensionRecord, Store

DEMO = [("1000", "Alice", "secret1000"), ("1001", "Bob", "secret1001")]


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def rows(store_url: str, query: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        result = [tuple(row) for row in connection.execute(sa.text(query))]
    engine.dispose()
    return result


def test_ha1_is_h_of_username_realm_password(store: Store) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    assert store.get_extension("1000") == ExtensionRecord(
        number="1000",
        name="Alice",
        ha1_md5=md5("1000:ipbx:secret1000"),
        ha1_sha256=sha256("1000:ipbx:secret1000"),
    )


def test_the_password_itself_is_never_stored(store: Store, store_url: str) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    for row in rows(store_url, "SELECT * FROM extensions"):
        assert not any("secret" in str(value) for value in row)


def test_applying_twice_changes_nothing(store: Store, store_url: str) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    before = rows(store_url, "SELECT * FROM extensions ORDER BY id")
    store.apply_extensions(DEMO, realm="ipbx")
    assert rows(store_url, "SELECT * FROM extensions ORDER BY id") == before
    assert [e.number for e in store.list_extensions()] == ["1000", "1001"]


def test_apply_updates_changed_names_and_passwords(store: Store) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    store.apply_extensions([("1001", "Robert", "newpass")], realm="ipbx")
    bob = store.get_extension("1001")
    assert bob is not None
    assert (bob.name, bob.ha1_md5) == ("Robert", md5("1001:ipbx:newpass"))


def test_a_new_realm_rehashes(store: Store) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    store.apply_extensions(DEMO, realm="pbx.example.com")
    alice = store.get_extension("1000")
    assert alice is not None
    assert alice.ha1_sha256 == sha256("1000:pbx.example.com:secret1000")


def test_apply_never_deletes(store: Store) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    store.apply_extensions([("1002", "Carol", "secret1002")], realm="ipbx")
    assert [e.number for e in store.list_extensions()] == ["1000", "1001", "1002"]


def test_unknown_extension_is_none(store: Store) -> None:
    assert store.get_extension("4242") is None


def test_tenants_keep_their_extensions_apart(store: Store) -> None:
    store.apply_extensions(DEMO, realm="ipbx")
    store.apply_extensions([("1000", "Zoe", "zoezoe")], realm="acme", tenant="acme.example")
    zoe = store.get_extension("1000", tenant="acme.example")
    assert zoe is not None and zoe.name == "Zoe"
    assert [e.name for e in store.list_extensions()] == ["Alice", "Bob"]
    assert store.list_extensions(tenant="nobody.example") == []
