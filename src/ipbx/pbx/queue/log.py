"""The call queues' log as ipbx keeps it: every `QueueEvent` the queues write goes to the
store (table ``queue_log``) and, for the events callers and supervisors follow, onto the
event bus (queue.*; the agents publish agent.state themselves, pbx/queue/agents.py).

`record` never blocks and never raises: the event waits in memory until the PBX core's
write-behind hands the batch to the store's thread (as the call records do), and the
bus's subscribers only queue what they do with it.

The export is Asterisk's queue_log file, one event a line:
``epoch|call_id|queue|agent|EVENT|data1|data2|...``; the epoch is whole seconds and an
event with no fields still ends with ``|`` after its verb (``...|REMOVEMEMBER|``), as
Asterisk writes it. A ``|`` or a line break inside a field would cut the line, so each
becomes a space when the event is recorded.
"""

from __future__ import annotations

from ipbx.pbx.events import EventBus
from ipbx.pbx.queue.model import NONE, QueueEvent
from ipbx.store import QueueLogRecord

# The bus's names for the queue events callers and supervisors follow (pbx/events.py).
QUEUE_JOINED = "queue.joined"
QUEUE_ANSWERED = "queue.answered"
QUEUE_ABANDONED = "queue.abandoned"
QUEUE_CALLBACK = "queue.callback"

_SEPARATOR = "|"
_UNSAFE = str.maketrans({"|": " ", "\n": " ", "\r": " "})


class StoredQueueLog:
    """The `QueueLog` the engine writes to, kept in the store."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self.pending: list[QueueLogRecord] = []

    def record(self, event: QueueEvent) -> None:
        self.pending.append(
            QueueLogRecord(
                time=event.time,
                call_id=_field(event.call_id),
                queue=_field(event.queue),
                agent=_field(event.agent),
                event=_field(event.event),
                data=_SEPARATOR.join(_field(value) for value in event.data),
            )
        )
        published = _bus_event(event)
        if published is not None:
            self.events.publish(*published)

    def take(self) -> list[QueueLogRecord]:
        """The events recorded since the last call, for the store."""
        records, self.pending = self.pending, []
        return records


def queue_log_line(record: QueueLogRecord) -> str:
    """The event as a line of Asterisk's queue_log file (without the line break)."""
    return (
        f"{int(record.time)}|{record.call_id}|{record.queue}|{record.agent}|{record.event}|"
        f"{record.data}"
    )


def queue_event(record: QueueLogRecord) -> QueueEvent:
    """The stored row as the event it was."""
    data = tuple(record.data.split(_SEPARATOR)) if record.data else ()
    return QueueEvent(record.time, record.call_id, record.queue, record.agent, record.event, data)


def _field(value: str) -> str:
    return value.translate(_UNSAFE)


def _bus_event(event: QueueEvent) -> tuple[str, dict[str, object]] | None:
    """The bus event a queue_log event makes, if any: the caller joined (ENTERQUEUE:
    url, caller ID, position), an agent answered (CONNECT: hold time...), the caller
    hung up waiting (ABANDON: position, original position, wait) or pressed the
    callback key (EXITWITHKEY: key, position, original position, wait)."""
    data = event.data
    call = {"call_id": event.call_id, "queue": event.queue}
    if event.event == "ENTERQUEUE":
        return QUEUE_JOINED, {**call, "caller": _at(data, 1), "position": _number(data, 2)}
    if event.event == "CONNECT":
        return QUEUE_ANSWERED, {**call, "extension": event.agent, "wait": _number(data, 0)}
    if event.event == "ABANDON":
        return QUEUE_ABANDONED, {**call, "position": _number(data, 0), "wait": _number(data, 2)}
    if event.event == "EXITWITHKEY":
        return QUEUE_CALLBACK, {**call, "position": _number(data, 1), "wait": _number(data, 3)}
    return None


def _at(data: tuple[str, ...], index: int) -> str | None:
    value = data[index] if index < len(data) else ""
    return value if value and value != NONE else None


def _number(data: tuple[str, ...], index: int) -> int | None:
    value = _at(data, index)
    return int(value) if value is not None and value.isdigit() else None
