"""A caller waiting in a queue asks to be called back, against real peers: baresip 1000
calls queue `support`, whose only agent (1001, a SIPp phone) is not registered yet, so
the caller waits. It hears the music on hold and, after `announce_position_seconds`,
its position; it presses 1, confirms its own number with 1 at the callback prompt, and
ipbx hangs up, keeping its place. Then the agent's phone registers: ipbx rings the agent
first and, once it answered, the caller's number; baresip answers on its own.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.support.baresip import BaresipControl, start_baresip, wait_registered
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.queue_log import queue_log_rows
from tests.support.server import extension_range, make_token, start_configured_ipbx
from tests.support.sipp import register_contact, start_sipp
from tests.support.softphone import write_tone
from tests.support.tones import heard

SCENARIOS = Path(__file__).parent / "scenarios"
CALLER, AGENT = extension_range(2)
MUSIC_HZ = 500
ANNOUNCE_SECONDS = 2


def _configure(config: dict[str, Any], api_port: int) -> None:
    config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
    config["queues"] = [
        {
            "name": "support",
            "agents": [AGENT.number],
            "announce_position_seconds": ANNOUNCE_SECONDS,
            "callback_key": "1",
        }
    ]
    config["numbers"] = [{"number": "600", "destination": "queue:support"}]


Stretches = list[tuple[str, float]]


def _heard(snd: Path, timeout: float, until: Callable[[Stretches], bool]) -> Stretches:
    """What baresip hears in its latest call (read from its decoded dump as it is
    written), once `until` says it holds what the test waits for."""
    deadline = time.monotonic() + timeout
    while True:
        dumps = sorted(snd.glob("dump-*-dec.wav"))
        data = dumps[-1].read_bytes() if dumps else b""
        start = data.find(b"data") + 8  # the samples follow the RIFF header's data chunk
        pcm = np.frombuffer(data[start : start + (len(data) - start) // 2 * 2], dtype="<i2")
        stretches = heard(pcm, {"music": MUSIC_HZ})
        if until(stretches) or time.monotonic() > deadline:
            return stretches
        time.sleep(0.1)


def _in_music(stretches: Stretches) -> bool:
    return len(stretches) >= 3 and stretches[-1][0] == "music"


def test_a_waiting_caller_is_called_back_when_an_agent_comes(tmp_path: Path) -> None:
    moh = tmp_path / "ipbx" / "data" / "moh"  # DATA_DIR/moh: the music on hold
    moh.mkdir(parents=True)
    write_tone(moh / "music.wav", MUSIC_HZ, 5)
    api_port = free_port("tcp")
    server = start_configured_ipbx(
        tmp_path / "ipbx", lambda config: _configure(config, api_port), extensions=[CALLER, AGENT]
    )
    control_port, phone_dir = free_port("tcp"), tmp_path / "caller"
    phone = start_baresip(
        phone_dir, registrar_port=server.port, user=CALLER, control_port=control_port,
        audio_file=write_tone(tmp_path / "microphone.wav", 1000, 30), seconds=60,
    )  # fmt: skip
    control, agent = None, None
    try:
        control = BaresipControl(control_port)
        wait_registered(server, CALLER.number)
        control.command("dial", f"sip:600@{LOOPBACK}:{server.port}")
        assert control.wait_event("CALL_ESTABLISHED", 10), control.events
        token = make_token(server.config_path, "admin")  # while the caller waits
        live = functools.partial(
            httpx.get, f"http://{LOOPBACK}:{api_port}/queues/support",
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip

        # Music, the position announcement, music again: the caller presses 1 during the
        # music and, once the callback prompt speaks, 1# (its own number).
        waiting = _heard(phone_dir / "snd", 15, _in_music)
        assert [kind for kind, _ in waiting[:3]] == ["music", "voice", "music"], waiting
        assert ANNOUNCE_SECONDS - 0.5 <= waiting[1][1] <= ANNOUNCE_SECONDS + 2.5, waiting
        control.command("sndcode", "1")
        prompt = _heard(phone_dir / "snd", 10, lambda stretches: len(stretches) > len(waiting))
        assert [kind for kind, _ in prompt[len(waiting) :]][:1] == ["voice"], prompt
        control.command("sndcode", "1")
        control.command("sndcode", "#")
        assert control.wait_event("CALL_CLOSED", 15), control.events  # ipbx hung up
        rows = queue_log_rows(server.data_dir, "support", lambda rows: len(rows) >= 2)
        assert [r.event for r in rows] == ["ENTERQUEUE", "EXITWITHKEY"]
        # The callback keeps the caller's place.
        [waiter] = live().json()["waiting"]
        assert (waiter["caller"], waiter["position"], waiter["callback"]) == (
            CALLER.number, 1, True,
        )  # fmt: skip
        control.events.clear()

        # The agent's phone registers: ipbx rings it, and once it answered, the caller.
        port = free_port("udp")
        registration = register_contact(server.port, AGENT, port, tmp_path)
        assert registration.successful == 1, registration.errors()
        agent = start_sipp(
            SCENARIOS / "queue_agent.xml", None, calls=1, workdir=tmp_path / "agent",
            local_port=port, name="agent-1001",
        )  # fmt: skip
        assert control.wait_event("CALL_ESTABLISHED", 20), control.events  # answered itself
        control.command("hangup")
        answered = agent.finish(10)
        assert (answered.successful, answered.failed) == (1, 0), answered.errors()
        rows = queue_log_rows(server.data_dir, "support", lambda rows: len(rows) >= 4)
        assert live().json()["waiting"] == []
    finally:
        if agent is not None:
            agent.finish(0)
        if control is not None:
            control.close()
        stop_process(phone)
        server.stop()
    assert [(r.event, r.agent) for r in rows] == [
        ("ENTERQUEUE", "NONE"),
        ("EXITWITHKEY", "NONE"),
        ("CONNECT", AGENT.number),
        ("COMPLETECALLER", AGENT.number),
    ]
    assert {r.call_id for r in rows} == {waiter["call_id"]}  # the caller's call throughout
    # The callback's call came to the caller from the agent, once the agent answered.
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log, server.log_tail()
    rang_agent = log.index(f"answered; calling {CALLER.number}")
    assert rang_agent < log.index("answered by", rang_agent)
    phone_log = (phone_dir / f"baresip-{CALLER.number}.log").read_text(errors="replace")
    assert f"answering call on line 1 from sip:{AGENT.number}@" in phone_log, phone_log
