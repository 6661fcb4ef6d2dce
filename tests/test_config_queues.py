"""Call queues in the configuration file: the issue's shape loads and dumps back as
written, agents are extensions, and every mistake (an unknown agent or destination, a
queue nobody defined, two queues sending an empty queue's callers to each other) is
refused with the file, line and field."""

from pathlib import Path

import pytest

from ipbx.config import load_config
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.prompt import Prompt
from ipbx.pbx.queue.config import QueueAgent
from tests.support.config_files import error_of, write

EXTENSIONS = """\
extensions:
  - {number: "1001", password: secret1001, voicemail: {pin: "1234"}}
  - {number: "1002", password: secret1002}
  - {number: "1003", password: secret1003}
"""

ISSUE_SHAPE = """\
queues:
  - name: sales
    strategy: ringall        # ringall | leastrecent | fewestcalls | roundrobin | linear | random | weighted
    agents: ["1001", "1002", {extension: "1003", penalty: 1}]
    ring_seconds: 15         # one offer to an agent
    wrapup_seconds: 10       # after a queue call, across all the agent's queues
    max_wait_seconds: 300
    max_callers: 50
    timeout_destination: "voicemail:1001"   # also when the queue is full or has no agent logged in
    announce_position_seconds: 30           # position and estimated wait, repeated; 0 = never
    periodic_announcement: "Thank you for waiting."   # text or file:PATH
    callback_key: "1"        # the caller presses 1: hangs up and is called back in turn
    service_level_seconds: 20
numbers:
  - {number: "600", destination: "queue:sales"}
"""  # noqa: E501 - the issue's text, unwrapped


def test_the_issue_shape_loads_and_dumps_back(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXTENSIONS + ISSUE_SHAPE))
    [queue] = config.queues
    assert queue.agents == [
        QueueAgent(extension="1001"),
        QueueAgent(extension="1002"),
        QueueAgent(extension="1003", penalty=1),
    ]
    assert queue.timeout_destination == Destination(Kind.VOICEMAIL, "1001")
    assert queue.periodic_announcement == Prompt.parse("Thank you for waiting.")
    assert (queue.ring_seconds, queue.wrapup_seconds, queue.callback_key) == (15, 10, "1")
    assert config.numbers[0].destination == Destination(Kind.QUEUE, "sales")
    dumped = queue.model_dump(mode="json")
    assert dumped["timeout_destination"] == "voicemail:1001"
    assert type(queue).model_validate(dumped) == queue


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "queues:\n  - {name: q, agents: ['1001', '1004']}\n",
            "ipbx.yaml:6: queues[0].agents[1]: there is no extension 1004",
        ),
        (
            "queues:\n  - {name: q, agents: ['1001', {extension: '1001', penalty: 2}]}\n",
            "ipbx.yaml:6: queues[0].agents[1]: 1001 is listed twice",
        ),
        (
            "queues:\n  - {name: q, agents: ['1001'],\n     timeout_destination: 'ivr:none'}\n",
            "ipbx.yaml:7: queues[0].timeout_destination: ivr:none: there is no ivr named none",
        ),
        (
            "queues:\n  - {name: q, strategy: rrmemory, agents: ['1001']}\n",
            "ipbx.yaml:6: queues[0].strategy",
        ),
        (
            "queues:\n  - {name: q, agents: []}\n",
            "ipbx.yaml:6: queues[0].agents: List should have at least 1 item",
        ),
        (
            "numbers:\n  - {number: '600', destination: 'queue:support'}\n",
            "ipbx.yaml:6: numbers[0].destination: queue:support: there is no queue named support",
        ),
        (
            "queues:\n"
            "  - {name: a, agents: ['1001'], timeout_destination: 'queue:b'}\n"
            "  - {name: b, agents: ['1002'], timeout_destination: 'queue:a'}\n",
            "ipbx.yaml:7: queues[1].timeout_destination: queue:a: loop queue:a -> queue:b",
        ),
    ],
)
def test_mistakes_name_the_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, EXTENSIONS + text)
