"""The call queues' live picture and agent states through the API, over a stand-in for
the queue engine: GET /queues, GET /queues/{name}, PUT /queues/{name}/agents/{ext}, the
Prometheus gauges per queue, and the queue events on the live feed (agent.state is the
engine's: pbx/queue/agents.py)."""

from __future__ import annotations

from ipbx.pbx.queue.model import AgentState, QueueEvent
from tests.api.test_metrics import samples
from tests.support.apiclient import Api
from tests.support.queues import FakeQueueDesk

NOW = 1_764_000_000.0


def test_a_supervisor_sees_the_queues_and_pauses_an_agent(api: Api) -> None:
    desk = FakeQueueDesk(NOW)
    api.pbx.queues = desk  # type: ignore[assignment]
    reader, admin = api.headers(api.reader), api.headers()

    listed = api.client.get("/queues", headers=reader).json()
    assert [q["name"] for q in listed["items"]] == ["sales", "support"]
    sales = api.client.get("/queues/sales", headers=reader).json()
    assert sales["waiting"][0] == {
        "call_id": "c9", "caller": "+15550109", "caller_name": "Carol", "position": 1,
        "waited": 42.0, "callback": False,
    }  # fmt: skip
    assert sales["waiting"][1]["callback"] is True
    assert [(a["extension"], a["state"]) for a in sales["agents"]] == [
        ("1001", "in_call"), ("1002", "available"),
    ]  # fmt: skip
    assert sales["service_level_today"] == 0.75

    paused = api.client.put(
        "/queues/sales/agents/1002", json={"action": "pause", "reason": "lunch"}, headers=admin
    )
    assert paused.status_code == 200
    assert paused.json() == {
        "extension": "1002", "state": "paused", "since": NOW, "calls_taken": 1, "reason": "lunch",
    }  # fmt: skip
    # Paused in every queue of the agent, not in one.
    assert desk.agents["1002"].state is AgentState.PAUSED

    # What a supervisor can get wrong, and who may change states.
    def change(queue: str, extension: str, body: object, token: dict[str, str] = admin) -> int:
        path = f"/queues/{queue}/agents/{extension}"
        return int(api.client.put(path, json=body, headers=token).status_code)

    assert change("nope", "1002", {"action": "login"}) == 404
    not_agent = api.client.put(
        "/queues/support/agents/1002", json={"action": "login"}, headers=admin
    )
    assert not_agent.status_code == 404
    assert not_agent.json()["detail"].startswith("extension:")
    assert change("sales", "1002", {"action": "nap"}) == 422
    assert change("sales", "1002", {}) == 422
    assert change("sales", "1002", {"action": "login"}, reader) == 403
    assert api.client.get("/queues/nope", headers=reader).status_code == 404
    other = api.headers(api.other_tenant)
    assert api.client.get("/queues", headers=other).json()["total"] == 0
    assert api.client.get("/queues/sales", headers=other).status_code == 404

    # Prometheus: callers waiting, agents by state and the longest wait, per queue.
    found = samples(api.client.get("/metrics", headers=reader).text)
    assert found[("ipbx_queue_waiting_callers", (("queue", "sales"),))] == 2
    assert found[("ipbx_queue_waiting_callers", (("queue", "support"),))] == 0
    assert found[("ipbx_queue_agents", (("queue", "sales"), ("state", "paused")))] == 1
    assert found[("ipbx_queue_agents", (("queue", "sales"), ("state", "in_call")))] == 1
    assert found[("ipbx_queue_agents", (("queue", "sales"), ("state", "available")))] == 0
    assert found[("ipbx_queue_longest_wait_seconds", (("queue", "sales"),))] == 42.0


def test_queue_events_reach_the_live_feed(api: Api) -> None:
    path = f"/events?token={api.reader}&type=queue.*&extension=1002"
    with api.client.websocket_connect(path) as feed:
        # queue.joined names no extension: the feed's filter leaves it out.
        api.pbx.queue_log.record(QueueEvent(NOW, "c1", "sales", "NONE", "ENTERQUEUE",
                                            ("", "+15550101", "1")))  # fmt: skip
        api.pbx.queue_log.record(QueueEvent(NOW + 9, "c1", "sales", "1002", "CONNECT",
                                            ("9", "c1-agent", "2")))  # fmt: skip
        answered = feed.receive_json()
        assert (answered["type"], answered["data"]) == (
            "queue.answered", {"call_id": "c1", "queue": "sales", "extension": "1002", "wait": 9},
        )  # fmt: skip
