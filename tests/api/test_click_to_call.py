"""Click-to-call through the API: POST /calls rings the agent's `ipbx phone`,
and when it answers, ipbx calls the number; the two hear each other's tones."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.ports import LOOPBACK, free_port
from tests.support.records import call_records
from tests.support.server import extension_range, make_token, run_ipbx, write_config
from tests.support.softphone import analyse, ipbx_phone, write_tone

AGENT, CUSTOMER = extension_range(2)
AGENT_HZ, CUSTOMER_HZ = 700, 1000


def test_click_to_call_rings_the_agent_then_dials_the_number(tmp_path: Path) -> None:
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port, extensions=[AGENT, CUSTOMER])
    token = make_token(config, "admin")
    reader = make_token(config, "read")
    server = run_ipbx(tmp_path, config, port)
    base, auth = f"http://{LOOPBACK}:{api_port}", {"Authorization": f"Bearer {token}"}
    try:
        phones = []
        for who, hz in ((AGENT, AGENT_HZ), (CUSTOMER, CUSTOMER_HZ)):
            tone = write_tone(tmp_path / f"{who.number}.wav", hz, 6)
            heard = tmp_path / f"heard-by-{who.number}.wav"
            options = ["--register", "--answer", "--play", str(tone), "--record", str(heard)]
            options += ["--duration", "4", "--timeout", "30"]
            phones.append(ipbx_phone(tmp_path, server.port, who, *options))
        with phones[0] as agent, phones[1] as customer:
            agent.wait_for("registered as")
            customer.wait_for("registered as")
            order = {"agent": AGENT.number, "number": CUSTOMER.number}
            refused = httpx.post(
                f"{base}/calls", json=order, headers={"Authorization": f"Bearer {reader}"}
            )
            assert refused.status_code == 403
            unknown = httpx.post(f"{base}/calls", json={**order, "number": "4999"}, headers=auth)
            assert unknown.status_code == 404 and "number" in unknown.json()["detail"]
            bad = httpx.post(f"{base}/calls", json={**order, "agent": "x"}, headers=auth)
            assert bad.status_code == 422 and "agent" in bad.text
            placed = httpx.post(f"{base}/calls", json=order, headers=auth)
            assert placed.status_code == 202, placed.text
            call_id = placed.json()["call_id"]
            assert agent.finish()[0] == 0, agent.log
            assert customer.finish()[0] == 0, customer.log
    finally:
        server.stop()
    assert analyse(tmp_path / f"heard-by-{AGENT.number}.wav").dominant_hz == pytest.approx(
        CUSTOMER_HZ, abs=20
    )
    assert analyse(tmp_path / f"heard-by-{CUSTOMER.number}.wav").dominant_hz == pytest.approx(
        AGENT_HZ, abs=20
    )
    [record] = call_records(server)
    assert (record.call_id, record.caller, record.callee, record.result) == (
        call_id, AGENT.number, CUSTOMER.number, "answered",
    )  # fmt: skip
