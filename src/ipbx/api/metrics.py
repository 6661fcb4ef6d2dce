"""GET /metrics: the Prometheus text exposition of the PBX's live figures."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ipbx.pbx.queue.model import AgentState

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices
    from ipbx.api.webhooks import Webhooks


class _PbxCollector(Collector):
    """Read at each scrape, so the figures are never stale and cost nothing between."""

    def __init__(self, pbx: PbxServices, webhooks: Webhooks, queue_depth: int) -> None:
        self._pbx = pbx
        self._webhooks = webhooks
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        pbx = self._pbx
        yield GaugeMetricFamily(
            "ipbx_active_calls", "Calls in progress", value=len(pbx.active_calls())
        )
        bindings = pbx.location.all_bindings(time.time())
        yield GaugeMetricFamily(
            "ipbx_registrations", "Registered contacts (unexpired bindings)", value=len(bindings)
        )
        yield GaugeMetricFamily(
            "ipbx_registered_extensions",
            "Extensions with at least one registered contact",
            value=len({b.aor for b in bindings}),
        )
        yield GaugeMetricFamily(
            "ipbx_webhook_queue_depth",
            "Webhook deliveries not yet accepted by their receiver",
            value=self._queue_depth,
        )
        yield CounterMetricFamily(
            "ipbx_events_published", "Events published on the bus", value=pbx.events.published
        )
        deliveries = CounterMetricFamily(
            "ipbx_webhook_attempts", "Webhook delivery attempts", labels=["result"]
        )
        deliveries.add_metric(["delivered"], self._webhooks.delivered)
        deliveries.add_metric(["failed"], self._webhooks.failed_attempts)
        yield deliveries
        yield from _sip_messages(pbx)
        yield from _queues(pbx)
        yield from _conferences(pbx)
        bridges = GaugeMetricFamily(
            "ipbx_media_worker_bridges",
            "Bridged calls each media worker process carries (media.workers)",
            labels=["worker"],
        )
        for index, count in enumerate(pbx.media_bridges()):
            bridges.add_metric([str(index)], count)
        yield bridges
        received, lost = pbx.rtp_totals()
        yield CounterMetricFamily(
            "ipbx_rtp_packets_received",
            "RTP packets received from phones and trunks (live and finished streams)",
            value=received,
        )
        yield CounterMetricFamily(
            "ipbx_rtp_packets_lost",
            "RTP packets lost on the way to ipbx: expected minus received (RFC 3550 A.3)",
            value=lost,
        )


def _sip_messages(pbx: PbxServices) -> Iterator[Metric]:
    """The SIP endpoint's message counters (sip/counts.py): every message on the wire,
    retransmissions included; methods outside RFC 3261 and its extensions are OTHER."""
    counts = pbx.sip_messages
    for name, help_text, label, table in (
        ("requests_received", "SIP requests received, by method", "method",
         counts.requests_received),
        ("requests_sent", "SIP requests sent, by method", "method", counts.requests_sent),
        ("responses_received", "SIP responses received, by status code", "code",
         counts.responses_received),
        ("responses_sent", "SIP responses sent, by status code", "code",
         counts.responses_sent),
    ):  # fmt: skip
        family = CounterMetricFamily(f"ipbx_sip_{name}", help_text, labels=[label])
        for key, value in sorted(table.items()):
            family.add_metric([str(key)], value)
        yield family
    yield CounterMetricFamily(
        "ipbx_sip_retransmissions",
        "SIP messages ipbx sent again (transaction timers, repeated answers)",
        value=counts.retransmissions,
    )
    yield CounterMetricFamily(
        "ipbx_sip_malformed_dropped",
        "Malformed SIP messages dropped with no answer (no request line or no Via)",
        value=counts.malformed_dropped,
    )


def _queues(pbx: PbxServices) -> Iterator[Metric]:
    """Each call queue's live picture: callers waiting (callbacks holding a place
    included), its agents by state and the longest wait so far."""
    queues = pbx.queues
    waiting = GaugeMetricFamily(
        "ipbx_queue_waiting_callers", "Callers waiting in the queue", labels=["queue"]
    )
    agents = GaugeMetricFamily(
        "ipbx_queue_agents", "The queue's agents, by state", labels=["queue", "state"]
    )
    longest = GaugeMetricFamily(
        "ipbx_queue_longest_wait_seconds",
        "How long the caller waiting longest has waited",
        labels=["queue"],
    )
    statuses = [queues.status(name) for name in sorted(queues.queues)] if queues else []
    for status in statuses:
        waiting.add_metric([status.name], len(status.waiting))
        states = Counter(agent.state for agent in status.agents)
        for state in AgentState:
            agents.add_metric([status.name, state.value], states[state])
        longest.add_metric([status.name], max((c.waited for c in status.waiting), default=0.0))
    yield from (waiting, agents, longest)


def _conferences(pbx: PbxServices) -> Iterator[Metric]:
    """Each conference room's members and how many of them talk now."""
    members = GaugeMetricFamily(
        "ipbx_conference_members", "Members in the conference room", labels=["conference"]
    )
    talking = GaugeMetricFamily(
        "ipbx_conference_talking", "Members the room's mixer hears talking", labels=["conference"]
    )
    rooms = pbx.conferences
    for name in sorted(rooms.rooms):
        status = rooms.status(name)
        members.add_metric([name], len(status.members))
        talking.add_metric([name], sum(m.talking for m in status.members))
    yield from (members, talking)


def render(pbx: PbxServices, webhooks: Webhooks, queue_depth: int) -> bytes:
    """One scrape; `queue_depth` is the webhooks' (`Webhooks.queue_depth()`), which the
    caller reads from the store off the event loop."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_PbxCollector(pbx, webhooks, queue_depth))
    return generate_latest(registry)
