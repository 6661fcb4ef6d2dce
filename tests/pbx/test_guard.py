"""The ban rules of the authentication guard, with an explicit clock."""

from ipbx.pbx.guard import Guard


def test_ten_failures_within_the_window_ban_the_source() -> None:
    guard = Guard(failures=10, window=60, ban_seconds=600)
    for i in range(9):
        guard.failed("192.0.2.9", float(i))
    assert guard.admits("192.0.2.9", 9.0)
    guard.failed("192.0.2.9", 9.0)
    assert not guard.admits("192.0.2.9", 10.0)
    assert guard.admits("192.0.2.10", 10.0)  # only that source
    assert guard.admits("192.0.2.9", 609.0)  # the ban ends


def test_failures_spread_beyond_the_window_do_not_ban() -> None:
    guard = Guard(failures=3, window=60, ban_seconds=600)
    for t in (0.0, 61.0, 122.0, 183.0):
        guard.failed("192.0.2.9", t)
    assert guard.admits("192.0.2.9", 184.0)


def test_a_success_forgets_earlier_mistakes() -> None:
    guard = Guard(failures=3, window=60, ban_seconds=600)
    guard.failed("192.0.2.9", 0.0)
    guard.failed("192.0.2.9", 1.0)
    guard.succeeded("192.0.2.9")
    guard.failed("192.0.2.9", 2.0)
    assert guard.admits("192.0.2.9", 3.0)


def test_trusted_networks_and_zero_failures_never_ban() -> None:
    trusted = Guard(failures=1, trusted=["10.0.0.0/8", "2001:db8::/32"])
    trusted.failed("10.1.2.3", 0.0)
    trusted.failed("2001:db8::7", 0.0)
    assert trusted.admits("10.1.2.3", 1.0) and trusted.admits("2001:db8::7", 1.0)
    disabled = Guard(failures=0)
    disabled.failed("192.0.2.9", 0.0)
    assert disabled.admits("192.0.2.9", 1.0)
