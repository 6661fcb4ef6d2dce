"""The integration part `api` (building blocks in bench/api.py): CPU per call setup
without and with a webhook and an event feed client, the events' rate and latency, and
REST requests per second; see bench/run.py's documentation."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import api
from bench.parts.session import Settings, emit, log
from bench.parts.sip import CallParties, call_step, register_callee, start_callee, start_uac
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import ServerNotReady, ServerProcess, core_times
from tests.support.server import extension_range, run_ipbx, write_ipbx_config
from tests.support.sipp import SippResult

# The api part: a webhook secret long enough for WebhookConfig, and the pause after each
# call phase (both phases: they are compared) before the server's CPU is read.
WEBHOOK_SECRET = "bench-webhook-secret-not-a-real-one"
SETTLE_S = 0.5
PEER_NOTE = "ipbx itself without webhooks or event feed, same server, same session"


@dataclass
class ApiServer:
    """ipbx with its API on 127.0.0.1:api_port, an admin token and a client holding it."""

    server: ServerProcess
    api_port: int
    token: str
    client: httpx.Client

    def get_total(self, path: str) -> int | None:
        """`total` of a list endpoint's answer; None if it did not answer 200."""
        response = self.client.get(path)
        total = response.json().get("total") if response.status_code == 200 else None
        return total if isinstance(total, int) else None


def start_api_server(settings: Settings, workdir: Path) -> ApiServer:
    """Config with the API on a free port, a token from `ipbx token create`,
    --api-records call records written to the store; then `ipbx serve`, pinned like the
    other parts' servers, and ready once GET /calls answers."""
    # A fresh store (an --out used before holds an earlier run's): exactly the seeded
    # records, no webhook or token left from then.
    shutil.rmtree(workdir / "data", ignore_errors=True)
    (workdir / "data").mkdir(parents=True)
    port, api_port = free_port("both"), free_port("tcp")
    rtp_range = free_udp_range(1000)
    config = write_ipbx_config(
        workdir / "ipbx.yaml",
        port=port,
        data_dir=workdir / "data",
        rtp_range=rtp_range,
        extensions=extension_range(2),
        api_port=api_port,
    )
    command = [sys.executable, "-m", "ipbx.cli", "token", "create", "--config", str(config)]
    created = subprocess.run(
        [*command, "--scope", "admin", "--name", "bench"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = created.stdout.split()[0]
    from ipbx.config import load_config

    started = time.monotonic()
    api.seed_call_records(load_config(config).store_url, settings.api_records)
    log(f"  {settings.api_records} call records written in {time.monotonic() - started:.1f} s")
    server = run_ipbx(workdir, config, port, rtp_range, cpu=settings.server_cpu)
    client = httpx.Client(
        base_url=f"http://{LOOPBACK}:{api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    deadline = time.monotonic() + 10.0
    while True:
        try:
            if client.get("/calls", params={"limit": 1}).status_code == 200:
                return ApiServer(server, api_port, token, client)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            client.close()
            server.stop()
            raise ServerNotReady(f"ipbx: no API on {LOOPBACK}:{api_port}\n{server.log_tail()}")
        time.sleep(0.1)


def wait_for_events(subscribers: Sequence[list[api.Arrival]], calls: int, timeout: float) -> float:
    """Wait (at most `timeout`) until every subscriber has the call.ended of `calls`
    calls; they come last and in order, so all of the calls' events are there. Returns
    the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(api.arrived(arrivals, calls) for arrivals in subscribers):
            break
        time.sleep(0.05)
    return time.monotonic() - started


def event_record(figure: str, summary: api.EventSummary, **extra: object) -> dict[str, object]:
    return {
        "figure": figure,
        "server": "ipbx",
        "value": round(summary.events_per_s, 1),
        "events": summary.received - summary.duplicates - summary.malformed,
        "expected": summary.expected,
        "missing": summary.missing,
        "missing_by_type": summary.missing_by_type,
        "duplicates": summary.duplicates,
        "other_events": summary.other,
        "latency_p50_ms": round(summary.latency_ms(50), 2),
        "latency_p99_ms": round(summary.latency_ms(99), 2),
        "latency_max_ms": round(summary.latency_ms(100), 2),
        "latency": "event's time field to arrival at the bench",
        **extra,
    }


def bench_integration(
    ipbx: ApiServer, parties: CallParties, loop: api.LoadLoop, settings: Settings, workdir: Path
) -> bool:
    """Figures 1 and 2: CPU per call setup without and with a webhook and a feed client;
    the webhook's and the feed's events per second, latency and what is missing."""
    rate = settings.api_rate
    calls = max(1, round(rate * settings.api_seconds))
    log(f"ipbx: {calls} calls at {rate}/s, no webhook, no event feed client")
    plain = call_step(
        ipbx.server, parties, rate, settings, workdir, calls=calls, name="plain",
        settle=lambda _: time.sleep(SETTLE_S),
    )  # fmt: skip
    receiver, feed = api.WebhookReceiver(), api.EventFeed()
    loop.run(receiver.start(), 5)
    hook = {"url": receiver.url, "events": ["*"], "secret": WEBHOOK_SECRET}
    added = ipbx.client.post("/config/webhooks", json=hook)
    if added.status_code != 201:
        log(f"  POST /config/webhooks: {added.status_code} {added.text}")
        return False
    loop.run(feed.open(f"ws://{LOOPBACK}:{ipbx.api_port}/events?token={ipbx.token}"), 15)
    time.sleep(1.0)  # the webhook worker restarts with the reload the POST caused
    log(f"ipbx: {calls} calls at {rate}/s, webhook to {receiver.url} and an event feed client")
    waited: list[float] = []

    def drain(result: SippResult) -> None:
        timeout = max(10.0, 2 * settings.api_seconds)
        subscribers = [receiver.arrivals, feed.arrivals]
        waited.append(wait_for_events(subscribers, result.successful, timeout))
        time.sleep(SETTLE_S)

    hooked = call_step(
        ipbx.server, parties, rate, settings, workdir, calls=calls, name="hooked", settle=drain
    )
    pending = ipbx.get_total("/webhooks/deliveries?status=pending&limit=1")
    failed = ipbx.get_total("/webhooks/deliveries?status=failed&limit=1")
    removed = ipbx.client.delete(f"/config/webhooks/{receiver.url}")
    if removed.status_code != 204:
        log(f"  DELETE /config/webhooks/...: {removed.status_code} {removed.text}")
    loop.run(feed.close(), 10)
    loop.run(receiver.stop(), 5)
    for step, label in ((plain, "without"), (hooked, "with")):
        result = step.result
        log(f"  {label}: {result.successful} ok, {result.failed} failed, {result.rate:.0f}/s, "
            f"server CPU {step.cpu_s:.2f} s")  # fmt: skip
    log(f"  events: webhook {len(receiver.arrivals)}, feed {len(feed.arrivals)}, after "
        f"{waited[0] if waited else 0:.1f} s of waiting; outbox pending {pending}, "
        f"failed {failed}")  # fmt: skip
    per_call: dict[str, float] = {}
    for step, integration in ((plain, "none"), (hooked, "webhook+event_feed")):
        record: dict[str, object] = {
            "figure": "api_cpu_s_per_call",
            "server": "ipbx",
            "integration": integration,
            "value": None,
            "at_rate": rate,
            "calls": step.result.requested,
            "failed_pct": round(step.result.failed_pct, 3),
        }
        if step.result.successful:
            per_call[integration] = step.cpu_s / step.result.successful
            record["value"] = round(per_call[integration], 6)
        emit(record)
    if len(per_call) == 2:
        ratio = per_call["webhook+event_feed"] / per_call["none"]
        emit({"figure": "api_cpu_s_per_call", "ratio_with_to_without": round(ratio, 3),
              "peer": PEER_NOTE})  # fmt: skip
    answered = hooked.result.successful
    webhook = api.summarise(receiver.arrivals, answered)
    emit(event_record("webhook_events_per_s", webhook, outbox_pending=pending,
                      outbox_failed=failed, subscribed="*"))  # fmt: skip
    events = api.summarise(feed.arrivals, answered)
    emit(event_record("event_feed_events_per_s", events, close_code=feed.close_code))
    return bool(per_call) and webhook.missing == 0 and events.missing == 0 and not failed


def rest_figure(
    name: str, result: api.RestResult, cpu_s: float, generator_pct: float, **extra: object
) -> dict[str, object]:
    return {
        "figure": "rest_requests_per_s",
        "server": "ipbx",
        "endpoint": name,
        "value": round(result.requests_per_s, 1),
        "latency_p50_ms": round(api.percentile(result.latencies_ms, 50), 2),
        "latency_p99_ms": round(api.percentile(result.latencies_ms, 99), 2),
        "requests": result.requests,
        "not_ok": result.requests - result.ok,
        "errors": dict(result.errors),
        "connections": result.connections,
        "seconds": round(result.seconds, 2),
        "server_cpu_pct": round(100.0 * cpu_s / result.seconds, 1) if result.seconds else None,
        "generator_core_pct": round(generator_pct, 1),
        **extra,
    }


def bench_rest(
    ipbx: ApiServer, parties: CallParties, loop: api.LoadLoop, settings: Settings, workdir: Path
) -> bool:
    """Figure 3: GET /calls?limit=50 over the seeded store, then GET /calls/active while
    SIPp makes calls at --api-rate."""
    base = f"http://{LOOPBACK}:{ipbx.api_port}"

    def load(path: str, totals: bool) -> tuple[api.RestResult, float, float]:
        """The load's result, the server's CPU seconds and the busy share (percent) of
        the generator's core meanwhile: near 100, the client set the pace."""
        before, core_before = ipbx.server.cpu_seconds(), core_times(settings.sipp_cpu)
        coro = api.rest_load(
            base + path,
            ipbx.token,
            connections=settings.rest_connections,
            seconds=settings.rest_seconds,
            max_requests=settings.rest_requests,
            totals=totals,
        )
        result = loop.run(coro, settings.rest_seconds + 30)
        cpu_s, core_after = ipbx.server.cpu_seconds() - before, core_times(settings.sipp_cpu)
        busy = core_after[0] - core_before[0]
        return result, cpu_s, 100.0 * busy / max(1, core_after[1] - core_before[1])

    log(f"ipbx: GET /calls?limit=50, {settings.rest_connections} connections")
    listing, cpu_s, generator = load("/calls?limit=50", totals=False)
    records = ipbx.get_total("/calls?limit=1")
    log(f"  {listing.ok}/{listing.requests} ok, {listing.requests_per_s:.0f}/s")
    emit(rest_figure("GET /calls?limit=50", listing, cpu_s, generator, records=records))

    rate = settings.api_rate
    calls = max(1, round(rate * (settings.rest_seconds + 2)))
    timeout = calls / rate * 2 + 15
    log(f"ipbx: GET /calls/active while SIPp calls at {rate}/s")
    uas = start_callee("uas", (), calls, parties.uas_port, timeout, settings, workdir, "uas-rest")
    uac = start_uac(ipbx.server, parties, rate, calls, timeout, settings, workdir, "uac-rest")
    try:
        time.sleep(1.0)
        active, cpu_s, generator = load("/calls/active?limit=50", totals=True)
    finally:
        result = uac.finish()
        uas.finish(timeout=2)
    mean = sum(active.totals) / len(active.totals) if active.totals else None
    log(f"  {active.ok}/{active.requests} ok, {active.requests_per_s:.0f}/s; calls "
        f"{result.successful} ok, {result.failed} failed")  # fmt: skip
    emit(rest_figure(
        "GET /calls/active", active, cpu_s, generator, active_calls_mean=mean and round(mean, 2),
        calls_at_rate=rate, note="server_cpu_pct includes the calls' own",
    ))  # fmt: skip
    return all(r.ok and r.ok == r.requests for r in (listing, active))


def bench_api(settings: Settings) -> bool:
    """The integration part (issue 6), against one `ipbx serve` with its API on a free
    port; see the module documentation and bench/api.py."""
    workdir = settings.out / "api"
    try:
        ipbx = start_api_server(settings, workdir / "server")
    except (ServerNotReady, OSError, subprocess.SubprocessError) as error:
        reason = str(error).splitlines()[0]
        log(f"ipbx: not started: {reason}")
        emit({"figure": "api_cpu_s_per_call", "server": "ipbx", "value": None, "error": reason})
        return False
    log(f"ipbx: pid {ipbx.server.pid}, udp:{LOOPBACK}:{ipbx.server.port}, "
        f"API http://{LOOPBACK}:{ipbx.api_port}")  # fmt: skip
    loop = api.LoadLoop(settings.sipp_cpu)
    try:
        parties = register_callee(ipbx.server, workdir / "calls")
        if parties is None:
            return False
        complete = bench_integration(ipbx, parties, loop, settings, workdir / "calls")
        complete &= bench_rest(ipbx, parties, loop, settings, workdir / "calls")
        return complete
    finally:
        loop.close()
        ipbx.client.close()
        code = ipbx.server.stop()
        log(f"ipbx: stopped (exit {code}); log {ipbx.server.log_path}")
