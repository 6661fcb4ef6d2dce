"""Event subscriptions: saved as they change, survive reopening the store, expire."""

from dataclasses import replace

from ipbx.store import Store, SubscriptionRecord

NOW = 1_700_000_000.0


def subscription(tag: str, expires_at: float = NOW + 600, version: int = 0) -> SubscriptionRecord:
    return SubscriptionRecord(
        package="dialog",
        resource="1001",
        watcher="1002",
        entity="sip:1001@pbx.example.com",
        event="dialog;id=7",
        call_id="3848276298220188511@192.0.2.4",
        local_tag=tag,
        remote_tag="as4f2b",
        local_uri="<sip:1001@pbx.example.com>;tag=" + tag,
        remote_uri="<sip:1002@pbx.example.com>;tag=as4f2b",
        remote_target="sip:1002@192.0.2.4:5062",
        local_seq=3,
        remote_seq=1,
        route_set=("<sip:proxy.example.com;lr>",),
        source=("UDP", "192.0.2.4", 5062),
        target=("UDP", "192.0.2.4", 5062),
        behind_nat=True,
        expires_at=expires_at,
        version=version,
    )


def test_subscriptions_are_saved_changed_removed_and_expire(store: Store, store_url: str) -> None:
    first, second = subscription("a1"), subscription("b2", expires_at=NOW - 1)
    store.save_subscriptions([first, second, subscription("c3")], [])
    changed = replace(first, version=4, local_seq=7)
    store.save_subscriptions([changed], ["c3"])
    store.close()

    reopened = Store(store_url)
    reopened.migrate()
    assert reopened.load_subscriptions(NOW) == [changed]  # b2 expired, c3 ended
    reopened.close()
