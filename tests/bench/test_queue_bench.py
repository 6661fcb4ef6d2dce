"""bench/parts/queues.py: the pure pieces of the `queues` benchmark part. The agents'
SIPp message trace gives the time from an agent's hang-up to its next call, the queue
log's rows account for every caller, and the callers join in steps. No timing is
asserted: figures come from bench/run.py on a quiet machine."""

from __future__ import annotations

from bench.parts.queues import (
    Step,
    TracedMessage,
    account,
    free_to_ring_ms,
    marginal_pct_per_caller,
    parse_trace,
    step_counts,
)


def _block(clock: str, way: str, first_line: str, call_id: str) -> str:
    # As SIPp 3.6 writes -trace_msg: a line of dashes with its clock, the direction,
    # a blank line, then the message with CRLF line ends.
    message = f"{first_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\nCall-ID: {call_id}\r\n\r\n"
    dashes = "-" * 47
    return f"{dashes} 2026-12-04 {clock}\n{way}\n\n{message}\n"


RECEIVED, SENT = "UDP message received [865] bytes :", "UDP message sent (420 bytes):"
TRACE = "".join(
    [
        _block("20:33:40.000000", RECEIVED, "INVITE sip:1001@127.0.0.1:55766 SIP/2.0", "a"),
        _block("20:33:40.000100", SENT, "SIP/2.0 180 Ringing", "a"),
        _block("20:33:40.010000", RECEIVED, "INVITE sip:1002@127.0.0.1:55766 SIP/2.0", "b"),
        _block("20:33:41.000000", SENT, "BYE sip:127.0.0.1:5060 SIP/2.0", "a"),
        _block("20:33:41.500000", SENT, "BYE sip:127.0.0.1:5060 SIP/2.0", "a"),  # again
        _block("20:33:41.002500", RECEIVED, "INVITE sip:1001@127.0.0.1:55766 SIP/2.0", "c"),
        _block("20:33:41.003000", RECEIVED, "INVITE sip:1001@127.0.0.1:55766 SIP/2.0", "c"),
        _block("20:33:42.000000", SENT, "BYE sip:127.0.0.1:5060 SIP/2.0", "b"),
        _block("20:33:43.000000", SENT, "BYE sip:127.0.0.1:5060 SIP/2.0", "c"),
    ]
)


def test_the_trace_reads_as_sipp_writes_it() -> None:
    messages = parse_trace(TRACE)
    assert len(messages) == 9
    invite, ringing = messages[0], messages[1]
    assert (invite.sent, invite.method, invite.call_id) == (False, "INVITE", "a")
    assert invite.user == "1001"
    assert (ringing.sent, ringing.method, ringing.call_id) == (True, "", "a")
    assert round(messages[2].at - invite.at, 6) == 0.01


def test_an_agent_is_timed_from_its_hang_up_to_its_next_invite() -> None:
    """1001 hangs up call a and is offered call c 2.5 ms later (the BYE and the INVITE
    sent again count once); 1002 and 1001's last call are followed by no call."""
    latencies = free_to_ring_ms(parse_trace(TRACE))
    assert [round(ms, 3) for ms in latencies] == [2.5]


def test_an_invite_to_another_agent_is_not_the_next_call() -> None:
    messages = [
        TracedMessage(0.0, False, "INVITE", "a", "1001"),
        TracedMessage(1.0, True, "BYE", "a", ""),
        TracedMessage(1.001, False, "INVITE", "b", "1002"),
        TracedMessage(1.004, False, "INVITE", "c", "1001"),
    ]
    assert [round(ms, 3) for ms in free_to_ring_ms(messages)] == [4.0]


def test_every_caller_is_accounted_for() -> None:
    rows = [
        ("a", "ENTERQUEUE"), ("a", "CONNECT"), ("a", "COMPLETEAGENT"),
        ("b", "ENTERQUEUE"), ("b", "RINGNOANSWER"), ("b", "ABANDON"),
        ("c", "ENTERQUEUE"), ("c", "EXITWITHTIMEOUT"),
        ("d", "ENTERQUEUE"), ("d", "CONNECT"), ("d", "COMPLETECALLER"),
        ("NONE", "PAUSE"), ("NONE", "UNPAUSE"),
    ]  # fmt: skip
    accounts = account(rows)
    assert (accounts.entered, accounts.connected, accounts.abandoned, accounts.exited) == (
        4, 2, 1, 1,
    )  # fmt: skip
    assert (accounts.lost, accounts.connected_twice, accounts.balanced) == (0, 0, True)


def test_a_caller_lost_or_connected_twice_unbalances_the_accounts() -> None:
    lost = account([("a", "ENTERQUEUE"), ("b", "ENTERQUEUE"), ("b", "CONNECT")])
    assert (lost.lost, lost.balanced) == (1, False)
    twice = account([("a", "ENTERQUEUE"), ("a", "CONNECT"), ("a", "CONNECT")])
    assert (twice.lost, twice.connected_twice, twice.balanced) == (0, 1, False)


def test_callers_join_in_steps_up_to_the_total() -> None:
    assert step_counts(200, 25) == [25, 50, 75, 100, 125, 150, 175, 200]
    assert step_counts(40, 15) == [15, 30, 40]
    assert step_counts(10, 0) == [10]


def test_a_step_is_held_when_every_caller_waits_hears_its_music_and_the_core_has_room() -> None:
    assert Step(placed=100, waiting=100, share=0.05, music_pps=49.9).held
    assert Step(placed=100, waiting=100, share=0.05).pct_per_caller == 0.05
    assert not Step(placed=100, waiting=97, share=0.5).held
    assert not Step(placed=100, waiting=100, share=0.95).held
    assert not Step(placed=100, waiting=100, share=0.5, music_pps=30.0).held


def test_one_more_caller_costs_the_growth_between_held_steps() -> None:
    steps = [
        Step(placed=25, waiting=25, share=0.20),
        Step(placed=50, waiting=50, share=0.35),
        Step(placed=75, waiting=75, share=0.50),
        Step(placed=100, waiting=90, share=0.99),  # not held: left out
        Step(placed=125, waiting=125, share=0.80),  # after one not held: left out too
    ]
    marginal = marginal_pct_per_caller(steps)
    assert marginal is not None and round(marginal, 6) == 0.6  # 30 % of a core for 50 more
    assert marginal_pct_per_caller(steps[:1]) is None
