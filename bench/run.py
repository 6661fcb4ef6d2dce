"""Benchmark ipbx against Kamailio with SIPp, on loopback, and print one JSON line per figure.

Figures, for each server (`make bench` runs this file):
  register_per_s      authenticated registrations per second (REGISTER, 401, REGISTER,
                      200 = one) for --users extensions, at the highest step of the rate
                      ramp that kept failures under 1 %;
  call_setups_per_s   authenticated calls per second, SIPp UAC as 1000 -> server -> SIPp
                      UAS registered as 1001 (INVITE, 407, INVITE, 180, 200, ACK, BYE),
                      chosen the same way;
  cpu_s_per_call      CPU seconds (user + system, server process tree, /proc/PID/stat)
                      per completed call at that step;
  concurrent_rtp_calls (ipbx only: Kamailio relays no media) the largest number of calls
                      held at once, each with G.711 RTP relayed both ways by the server,
                      at which every call completed, the RTP loss stayed under 0.1 % and
                      the server used under 90 % of its core (see bench_rtp).
then, where both servers have a figure, {"figure": ..., "ratio_ipbx_to_kamailio": x}.

The media parts (bench/media.py, driven by our own load tool bench/rtpload.py):
  relay_calls, relay_us_per_packet  G.711 calls relayed by ipbx, by ipbx with
                      media.relay: kernel (server "ipbx-kernel", root only) and by
                      rtpengine on one core within loss < 0.1 % and added jitter p99
                      < 5 ms, the CPU per packet at a load all carried (the relay
                      process's, and the machine's: machine_us_per_packet), and each
                      one's ratio_to_rtpengine and machine_ratio_to_rtpengine;
  transcode_calls, transcode_cpu_pct_per_call  Opus <-> PCMU calls transcoded by ipbx
                      and by rtpengine (FFmpeg's codecs) on one core within the same
                      limits, the share of a core per call at a load both carried,
                      and ipbx's ratio_to_rtpengine (calls: ratio_ipbx_to_rtpengine).

The integration part `api` (issue 6; building blocks in bench/api.py), ipbx only, one
`ipbx serve` with api.listen on a free loopback port, an admin token from `ipbx token
create` and --api-records call records written through ipbx.store before it starts:
  api_cpu_s_per_call  server CPU per call setup (the calls part's SIPp calls, --api-rate
                      for --api-seconds) with integration "none" (no webhook, no event
                      feed client), then "webhook+event_feed" (one webhook subscribed to *
                      through POST /config/webhooks, delivering to a receiver in this
                      process that answers 204, and one WebSocket client of /events); the
                      CPU is read until every event has arrived. Then
                      {"ratio_with_to_without": x}: the peer is ipbx itself without
                      integration, same server, same session (no other PBX is measured);
  webhook_events_per_s, event_feed_events_per_s  events per second from first to last
                      arrival (the offered 4 x --api-rate unless delivery falls behind:
                      then latency grows; raise --api-rate to find the ceiling), latency
                      p50/p99/max from the event's own `time` field to its arrival here,
                      and what is missing against the calls made times call.started,
                      call.ringing, call.answered and call.ended;
  rest_requests_per_s GET /calls?limit=50 over the seeded store, then GET /calls/active
                      while SIPp calls at --api-rate: requests per second and latency
                      p50/p99 from --rest-connections keep-alive connections (httpx) for
                      --rest-seconds or --rest-requests, whichever ends first; with the
                      server's CPU share and the generator core's busy share (near 100 %:
                      the client set the pace, not the server).
The receiver, the feed client and the REST load run in one thread pinned to the load
generator's core. Run it alone with `.venv/bin/python bench/run.py --parts api` (small:
`--api-rate 20 --api-seconds 3 --api-records 2000 --rest-seconds 3`).

The part `memory` (bench/parts/memory.py), ipbx only:
  memory_rss_mb       the server's peak RSS (/proc/PID/status VmRSS) under --memory-calls
                      SIPp calls (the calls part's scenario) at a steady --memory-rate per
                      second, sampled every --memory-every calls, and its growth from
                      10,000 calls to the end; the goal is < 200 MB at 250/s and flat
                      (±10 %). `--parts memory --memory-calls 100000` for the long run.
                      With --memory-rtp S each call sends S s of RTP (20 ms PCMA), which
                      the callee echoes: the server relays it both ways, and the figure
                      adds the share of it that came back (`--memory-rate 100
                      --memory-rtp 2` for 100,000 relayed calls in 17 minutes).

The part `queues` (bench/parts/queues.py), ipbx only: --queue-callers SIPp callers
waiting in one queue with music on hold and announcements, then served by --queue-agents
SIPp agents answering and hanging up at random intervals:
  queue_cpu_pct_per_waiting_caller  the server's CPU share of one core per waiting
                      caller over --queue-seconds, read each time --queue-step more
                      callers wait (goal < 0.1 %);
  queue_free_to_ring_ms  from an agent's phone hanging up to the next INVITE reaching
                      it, p50/p99, from the agents' SIPp message trace;
  queue_callers_lost  callers neither connected once, abandoned nor sent out, from the
                      queue log (0 is the goal). Small: `--parts queues --servers ipbx
                      --queue-callers 40 --queue-agents 5 --queue-step 20 --queue-seconds 3`.

The part `webrtc` (bench/parts/webrtc.py), ipbx only: browsers calling a G.711 phone,
their load generator bench/webrtcload.py (SIP over wss://, ICE, DTLS-SRTP, rtcp-mux):
  webrtc_calls        per scenario, "relay" (PCMU browsers, SRTP <-> RTP) and "transcode"
                      (Opus browsers), the most concurrent calls within loss < 0.1 % and
                      jitter p99 < 5 ms both ways, the server's CPU per call and its ratio
                      to a plain G.711 call's at the same count (ratio_to_g711; Opus also
                      to plain RTP transcoding's, ratio_to_rtp_transcode). Small:
                      `--parts webrtc --servers ipbx --webrtc-calls 2
                      --webrtc-transcode-calls 2 --webrtc-seconds 2`.

The part `conference` (bench/parts/conference.py), ipbx only: conference_members (one
room, 3 talking) and conference_small_rooms (rooms of 4, 1 talking), the most members
within loss < 0.1 % and jitter p99 < 5 ms, with the CPU per member.

The part `loaded` (bench/parts/loaded.py), ipbx only: calls_under_media, the calls
part's ramp idle and again while --loaded-media-calls relayed calls are up on the same
server, and their ratio. Small: `--parts loaded --servers ipbx --call-rates 50,100
--loaded-media-calls 20`. It runs with one media worker, on the other core than SIP.

The part `scale` (bench/parts/scale.py), ipbx only: scale_calls, the transcode ramp with
one media worker and with two, the calls per worker and their ratio. Small: `--parts
scale --servers ipbx --transcode-calls 5,10`.

The server runs pinned to one core and every SIPp to another (taskset), so SIPp and the
server do not compete; pinned so, ipbx has no media worker (media.workers: auto) unless
the part asks for some. Every step is bounded by a call count and a SIPp -timeout. Progress
goes to stderr; logs, configs and SIPp statistics stay in --out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.parts.conference import bench_conference  # noqa: E402
from bench.parts.integration import bench_api  # noqa: E402
from bench.parts.loaded import bench_loaded  # noqa: E402
from bench.parts.memory import bench_memory  # noqa: E402
from bench.parts.queues import bench_queues  # noqa: E402
from bench.parts.relay import bench_relay, bench_transcode  # noqa: E402
from bench.parts.rtp import RTP_FIGURE, bench_rtp, report_rtp  # noqa: E402
from bench.parts.scale import bench_scale  # noqa: E402
from bench.parts.session import Settings, emit, log  # noqa: E402
from bench.parts.sip import bench_calls, bench_register, report  # noqa: E402
from bench.parts.webrtc import bench_webrtc  # noqa: E402
from tests.support.kamailio import start_kamailio  # noqa: E402
from tests.support.ports import LOOPBACK  # noqa: E402
from tests.support.processes import ServerNotReady, ServerProcess  # noqa: E402
from tests.support.server import extension_range, start_ipbx  # noqa: E402

FIGURES = ("register_per_s", "call_setups_per_s", "cpu_s_per_call")
PARTS = (
    "register", "calls", "rtp", "relay", "transcode", "api", "memory", "queues", "webrtc",
    "conference", "loaded", "scale",
)  # fmt: skip
SERVERS = ("ipbx", "kamailio", "rtpengine", "ipbx-kernel")
# What each server is benchmarked for: SIP servers for SIP parts, media relays for relay
# (ipbx-kernel: ipbx with media.relay: kernel), transcoders for transcode.
SIP_SERVERS = ("ipbx", "kamailio")
RELAYS = ("ipbx", "rtpengine", "ipbx-kernel")
TRANSCODERS = ("ipbx", "rtpengine")
# media.relay's values, for the parts that can run with either.
RELAY_MODES = ("userspace", "kernel")


def start_server(name: str, settings: Settings, workdir: Path) -> ServerProcess:
    if name == "ipbx":
        # Extensions 1000 and 1001 for calls, then the registration population. A call
        # anchors two legs of RTP + RTCP: 4000 ports carry 1000 calls at once.
        return start_ipbx(
            workdir,
            extension_range(settings.users + 2),
            cpu=settings.server_cpu,
            rtp_ports=4000,
        )
    return start_kamailio(workdir, cpu=settings.server_cpu)


def wanted(name: str, settings: Settings) -> list[str]:
    """The figures `settings.parts` asks of this server."""
    figures: list[str] = []
    if "register" in settings.parts:
        figures.append("register_per_s")
    if "calls" in settings.parts:
        figures += ["call_setups_per_s", "cpu_s_per_call"]
    if "rtp" in settings.parts and name == "ipbx":
        figures.append(RTP_FIGURE)
    return figures


def bench_server(name: str, settings: Settings) -> dict[str, float]:
    """Run every figure asked of one server; print its lines, return its values."""
    workdir = settings.out / name
    values: dict[str, float] = {}
    if "rtp" in settings.parts and name != "ipbx":
        log(f"{name}: relays no media, no {RTP_FIGURE}")
    figures = wanted(name, settings)
    if not figures:
        return values
    try:
        server = start_server(name, settings, workdir / "server")
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"{name}: not started: {reason}")
        for figure in figures:
            emit({"figure": figure, "server": name, "value": None, "error": reason})
        return values
    log(f"{name}: pid {server.pid}, udp:{LOOPBACK}:{server.port}")
    try:
        if "register_per_s" in figures:
            log(f"{name}: register ramp, {settings.users} users")
            best = bench_register(server, settings, workdir / "register")
            values.update(report(name, "register_per_s", best))
        if "call_setups_per_s" in figures:
            log(f"{name}: call ramp")
            best = bench_calls(server, settings, workdir / "calls")
            values.update(report(name, "call_setups_per_s", best))
            if best is not None and best.result.successful:
                per_call = best.cpu_s / best.result.successful
                values["cpu_s_per_call"] = per_call
                emit(
                    {
                        "figure": "cpu_s_per_call",
                        "server": name,
                        "value": round(per_call, 6),
                        "at_rate": best.target_rate,
                    }
                )
            else:
                emit({"figure": "cpu_s_per_call", "server": name, "value": None})
        if RTP_FIGURE in figures:
            log(f"{name}: concurrent RTP calls ramp")
            values.update(report_rtp(name, bench_rtp(server, settings, workdir / "rtp")))
    finally:
        code = server.stop()
        log(f"{name}: stopped (exit {code}); log {server.log_path}")
    return values


def parse_rates(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: Sequence[str] | None) -> tuple[list[str], Settings]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--users", type=int, default=2000, help="registration population")
    parser.add_argument("--register-rates", default="250,500,1000,2000,4000,8000,16000")
    parser.add_argument("--call-rates", default="25,50,100,200,400,800,1600,3200")
    parser.add_argument(
        "--rtp-calls",
        default="100,200,300,400,500,600,800,1000",
        help="concurrent calls per step of the RTP ramp (ipbx has RTP ports for 1000)",
    )
    parser.add_argument(
        "--relay-calls",
        default="100,200,300,400,500,600,700,800,1000,1200",
        help="concurrent calls per step of the relay ramp (ipbx and rtpengine)",
    )
    parser.add_argument(
        "--transcode-calls",
        default="5,10,20,30,40,50,60,70,80,90,100,120,130,140,150,160,180",
        help="concurrent calls per step of the Opus <-> PCMU transcoding ramp",
    )
    parser.add_argument(
        "--media-seconds", type=float, default=10.0, help="RTP time of a relay or transcode step"
    )
    parser.add_argument(
        "--api-rate", type=int, default=50, help="call setups per second of the api part"
    )
    parser.add_argument(
        "--api-seconds", type=float, default=10.0, help="length of each api call phase"
    )
    parser.add_argument(
        "--api-records", type=int, default=10_000, help="call records in the store for GET /calls"
    )
    parser.add_argument("--rest-connections", type=int, default=8, help="REST load connections")
    parser.add_argument("--rest-seconds", type=float, default=10.0, help="each REST load's time")
    parser.add_argument(
        "--rest-requests", type=int, default=50_000, help="each REST load's request limit"
    )
    parser.add_argument(
        "--memory-calls", type=int, default=40_000, help="calls of the memory part (or 100000)"
    )
    parser.add_argument(
        "--memory-rate", type=int, default=250, help="steady call setups per second (memory)"
    )
    parser.add_argument(
        "--memory-every", type=int, default=5_000, help="calls between two RSS samples"
    )
    parser.add_argument(
        "--memory-settle", type=float, default=40.0, help="idle seconds before the last sample"
    )
    parser.add_argument(
        "--memory-rtp",
        type=float,
        default=0.0,
        help="seconds of RTP each memory call sends, echoed back (0: signalling only)",
    )
    parser.add_argument(
        "--queue-callers", type=int, default=200, help="callers waiting in the queues part"
    )
    parser.add_argument("--queue-agents", type=int, default=20, help="agents of the queue")
    parser.add_argument(
        "--queue-relay",
        choices=RELAY_MODES,
        default="userspace",
        help="the queues part's media.relay (kernel: waiting callers' voice dropped there)",
    )
    parser.add_argument(
        "--queue-step", type=int, default=25, help="callers joining between two CPU readings"
    )
    parser.add_argument(
        "--queue-seconds", type=float, default=10.0, help="CPU interval of each step"
    )
    parser.add_argument(
        "--webrtc-calls",
        default="50,100,200,300,400,500",
        help="concurrent PCMU browser calls per step of the webrtc relay ramp",
    )
    parser.add_argument(
        "--webrtc-transcode-calls",
        default="5,10,15,20,30",
        help="concurrent Opus browser calls per step of the webrtc transcode ramp",
    )
    parser.add_argument(
        "--webrtc-seconds", type=float, default=5.0, help="media time of a webrtc step"
    )
    parser.add_argument(
        "--conference-members",
        default="100,200,300,400,500,600,800,1000",
        help="members of the one room per step of the conference ramp",
    )
    parser.add_argument(
        "--conference-small-rooms",
        default="100,200,400,600,800,1000",
        help="members (rooms of 4) per step of the small rooms ramp",
    )
    parser.add_argument(
        "--loaded-media-calls",
        type=int,
        default=500,
        help="relayed calls up while the loaded part's call ramp runs",
    )
    parser.add_argument(
        "--loaded-worker-core",
        choices=("sipp", "server"),
        default="sipp",
        help="the loaded part's media worker: on SIPp's core, or on the server's (with SIP)",
    )
    parser.add_argument(
        "--loaded-relay",
        choices=RELAY_MODES,
        default="userspace",
        help="the loaded part's media.relay (kernel: the relayed calls' RTP never reaches ipbx)",
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    parser.add_argument("--step-seconds", type=float, default=4.0, help="length of a step")
    parser.add_argument("--out", type=Path, default=None, help="logs and statistics")
    args = parser.parse_args(argv)
    out: Path = args.out or REPO_ROOT / "bench" / "out" / time.strftime("%Y%m%d-%H%M%S")
    # Two cores or more: the server on core 1, SIPp on core 0.
    pinned = (os.cpu_count() or 1) >= 2
    settings = Settings(
        users=args.users,
        register_rates=parse_rates(args.register_rates),
        call_rates=parse_rates(args.call_rates),
        rtp_calls=parse_rates(args.rtp_calls),
        relay_calls=parse_rates(args.relay_calls),
        transcode_calls=parse_rates(args.transcode_calls),
        media_seconds=args.media_seconds,
        api_rate=args.api_rate,
        api_seconds=args.api_seconds,
        api_records=args.api_records,
        rest_connections=args.rest_connections,
        rest_seconds=args.rest_seconds,
        rest_requests=args.rest_requests,
        memory_calls=args.memory_calls,
        memory_rate=args.memory_rate,
        memory_every=args.memory_every,
        memory_settle=args.memory_settle,
        memory_rtp=args.memory_rtp,
        queue_callers=args.queue_callers,
        queue_agents=args.queue_agents,
        queue_relay=args.queue_relay,
        queue_step=args.queue_step,
        queue_seconds=args.queue_seconds,
        webrtc_calls=parse_rates(args.webrtc_calls),
        webrtc_transcode_calls=parse_rates(args.webrtc_transcode_calls),
        webrtc_seconds=args.webrtc_seconds,
        conference_members=parse_rates(args.conference_members),
        conference_small_rooms=parse_rates(args.conference_small_rooms),
        loaded_media_calls=args.loaded_media_calls,
        loaded_worker_core=args.loaded_worker_core,
        loaded_relay=args.loaded_relay,
        parts=[part for part in args.parts.split(",") if part],
        step_seconds=args.step_seconds,
        out=out.resolve(),
        server_cpu=1 if pinned else None,
        sipp_cpu=0 if pinned else None,
    )
    return [s for s in args.servers.split(",") if s], settings


def main(argv: Sequence[str] | None = None) -> int:
    servers, settings = parse_args(argv)
    unknown = set(servers) - set(SERVERS)
    if unknown:
        log(f"unknown servers: {', '.join(sorted(unknown))}")
        return 2
    unknown = set(settings.parts) - set(PARTS)
    if unknown:
        log(f"unknown parts: {', '.join(sorted(unknown))}")
        return 2
    settings.out.mkdir(parents=True, exist_ok=True)
    log(f"output in {settings.out}")
    results = {name: bench_server(name, settings) for name in servers if name in SIP_SERVERS}
    ipbx, kamailio = results.get("ipbx", {}), results.get("kamailio", {})
    for figure in FIGURES:
        if ipbx.get(figure) and kamailio.get(figure):
            ratio = ipbx[figure] / kamailio[figure]
            emit({"figure": figure, "ratio_ipbx_to_kamailio": round(ratio, 3)})
    complete = all(values or not wanted(name, settings) for name, values in results.items())
    if "relay" in settings.parts:
        complete &= bench_relay([name for name in servers if name in RELAYS], settings)
    if "transcode" in settings.parts:
        complete &= bench_transcode([name for name in servers if name in TRANSCODERS], settings)
    if "api" in settings.parts and "ipbx" in servers:
        complete &= bench_api(settings)
    if "memory" in settings.parts and "ipbx" in servers:
        complete &= bench_memory(settings)
    if "queues" in settings.parts and "ipbx" in servers:
        complete &= bench_queues(settings)
    if "webrtc" in settings.parts and "ipbx" in servers:
        complete &= bench_webrtc(settings)
    if "conference" in settings.parts and "ipbx" in servers:
        complete &= bench_conference(settings)
    if "loaded" in settings.parts and "ipbx" in servers:
        complete &= bench_loaded(settings)
    if "scale" in settings.parts and "ipbx" in servers:
        complete &= bench_scale(settings)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
