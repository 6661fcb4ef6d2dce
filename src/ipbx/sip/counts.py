"""How many SIP messages went in and out, by method and by status code, for /metrics.

Counted where messages meet the transaction layer, so every transport is included:
each message on the wire once, retransmissions too (what a packet capture or Kamailio's
core statistics count), and the retransmissions ipbx sent also on their own. Plain
integers in dicts: a message costs one dict increment, nothing is allocated for it.

A method that is not one of RFC 3261's or a registered extension's is counted as OTHER,
so a scanner sending made-up methods cannot grow the table (status codes are three
digits, bounded by the parser).
"""

from dataclasses import dataclass, field

OTHER = "OTHER"
# RFC 3261 and the extensions that define methods: 3262 PRACK, 3265/6665 SUBSCRIBE and
# NOTIFY, 3311 UPDATE, 3428 MESSAGE, 3515 REFER, 3903 PUBLISH, 6086 INFO.
METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
     "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)  # fmt: skip


@dataclass(slots=True)
class MessageCounts:
    """Counters since start; read them, never reset them (Prometheus counters)."""

    requests_received: dict[str, int] = field(default_factory=dict)
    requests_sent: dict[str, int] = field(default_factory=dict)
    responses_received: dict[int, int] = field(default_factory=dict)
    responses_sent: dict[int, int] = field(default_factory=dict)
    # Of the messages sent, those that repeat an earlier one (timers A, E, G, answers
    # to a retransmitted request, ACKs to a repeated final response).
    retransmissions: int = 0
    # Malformed messages that got no answer: no request line, no Via to answer to, an
    # ACK, or a broken response (RFC 3261 §8.2, §18.3).
    malformed_dropped: int = 0

    def request_received(self, method: str) -> None:
        method = method if method in METHODS else OTHER
        self.requests_received[method] = self.requests_received.get(method, 0) + 1

    def request_sent(self, method: str) -> None:
        method = method if method in METHODS else OTHER
        self.requests_sent[method] = self.requests_sent.get(method, 0) + 1

    def response_received(self, status: int) -> None:
        self.responses_received[status] = self.responses_received.get(status, 0) + 1

    def response_sent(self, status: int) -> None:
        self.responses_sent[status] = self.responses_sent.get(status, 0) + 1
