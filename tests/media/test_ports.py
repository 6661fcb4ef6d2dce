"""RTP port pool (RFC 3550 §11: even RTP port, RTCP on the next)."""

import pytest

from ipbx.media.ports import PortPool, PortPoolExhausted


def test_hands_out_even_ports_and_takes_them_back() -> None:
    pool = PortPool("127.0.0.1", 10001, 10006)
    assert [pool.acquire(), pool.acquire()] == [10002, 10004]
    with pytest.raises(PortPoolExhausted, match="10002-10006"):
        pool.acquire()
    pool.release(10002)
    assert pool.acquire() == 10002


def test_refuses_ports_it_did_not_hand_out() -> None:
    pool = PortPool("127.0.0.1", 10000, 10010)
    with pytest.raises(ValueError):
        pool.release(10002)


def test_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError):
        PortPool("127.0.0.1", 10000, 10000)
