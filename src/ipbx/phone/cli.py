"""`ipbx phone`: arguments and entry point (the user agent lives in ipbx.phone.ua).

stdout carries what a script reads (`dtmf: 5` lines and one final `result: ...` line);
stderr carries the log. Exit status: 0 answered and ended normally (or registered, when
only registering), 1 not answered or refused, 2 usage error (including a --play file
that cannot be decoded: it is read, through FFmpeg as the server's prompts are, before
any call is placed).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from ipbx.media.audiofile import AudioFileError, read_audio
from ipbx.media.codecs import AUDIO_CODECS, Codec, Pcm
from ipbx.phone.ua import Call, CallFailed, Phone, PhoneSettings
from ipbx.sip.errors import SipError
from ipbx.sip.message import Response
from ipbx.sip.transport.endpoint import resolve
from ipbx.sip.uri import parse_uri

log = logging.getLogger("ipbx.phone")

CODECS = {codec.name.upper(): codec for codec in AUDIO_CODECS}
# The sample rate --play is decoded to: the clock rate of every codec the phone speaks.
(PLAY_RATE,) = {codec.clock_rate for codec in AUDIO_CODECS}
# After the last audio or DTMF packet, wait this long before BYE so it gets there first.
TAIL_SECONDS = 0.3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, help="PBX address, host:port")
    parser.add_argument("--user", required=True, help="extension number to act as")
    parser.add_argument("--password", default="", help="digest password of the extension")
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument("--local", help="local SIP address host:port (default: free port)")
    parser.add_argument(
        "--rtp-ports", type=_port_range, default=(40000, 40999), help="local RTP ports A-B"
    )
    parser.add_argument(
        "--codec",
        action="append",
        type=str.upper,
        choices=sorted(CODECS),
        help="offer/accept this codec; repeat for several, in order of preference",
    )
    parser.add_argument("--register", action="store_true", help="register for the session")
    parser.add_argument("--expires", type=int, default=300, help="registration expiry (s)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--call", metavar="NUMBER", help="call this number")
    action.add_argument("--answer", action="store_true", help="wait for a call and answer it")
    parser.add_argument(
        "--play",
        type=Path,
        help="audio file to send once the call is up (WAV, MP3: any FFmpeg reads)",
    )
    parser.add_argument("--record", type=Path, help="write received audio to this WAV file")
    parser.add_argument(
        "--dtmf", help="digits to send as RFC 4733 events after answer; a comma pauses 1 s"
    )
    parser.add_argument("--duration", type=float, help="hang up after this many seconds")
    parser.add_argument(
        "--hold", type=float, metavar="SECONDS", help="hold after S s, resume S s later"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="bound on everything (s)")


def _port_range(text: str) -> tuple[int, int]:
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit() or int(first) >= int(last):
        raise argparse.ArgumentTypeError(f"expected A-B with A < B, got {text!r}")
    return int(first), int(last)


@dataclass
class Outcome:
    answered: bool = False
    registered: bool = False
    status: int = 0
    reason: str = ""


async def run(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        audio = None if args.play is None else _decode(args.play)
    except ValueError as exc:
        print(f"ipbx phone: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s: %(message)s",
    )
    phone = await Phone.start(settings)
    outcome = Outcome()
    try:
        async with asyncio.timeout(args.timeout):
            await _session(phone, args, audio, outcome)
    except TimeoutError:
        log.info("timed out after %g s", args.timeout)
        if not outcome.answered and not outcome.status:
            outcome.status, outcome.reason = 408, "Request Timeout"
    except CallFailed as exc:
        log.info("failed: %s", exc)
        outcome.status, outcome.reason = exc.status, exc.reason
    finally:
        await phone.close()
    if outcome.answered:
        print("result: answered", flush=True)
        return 0
    if outcome.registered and not (args.call or args.answer):
        print("result: registered", flush=True)
        return 0
    print(f"result: failed {outcome.status} {outcome.reason}".rstrip(), flush=True)
    return 1


def _settings(args: argparse.Namespace) -> PhoneSettings:
    """Validate the arguments argparse cannot check alone; ValueError is a usage error."""
    if args.answer and not args.register:
        raise ValueError("--answer needs --register (the PBX must know where to send calls)")
    for name in ("play", "record", "dtmf", "hold"):
        if getattr(args, name) and not (args.call or args.answer):
            raise ValueError(f"--{name} needs --call or --answer")
    if args.play is not None and not args.play.is_file():
        raise ValueError(f"--play: no such file {args.play}")
    try:
        server = resolve(parse_uri(f"sip:{args.server};transport={args.transport}"))
    except (SipError, OSError) as exc:
        raise ValueError(f"--server {args.server!r}: {exc}") from None
    local_host, local_port = _source_address(server.host), 0
    if args.local:
        host, _, port = args.local.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--local: expected HOST:PORT, got {args.local!r}")
        local_host, local_port = host.strip("[]"), int(port)
    codecs: tuple[Codec, ...] = tuple(CODECS[name] for name in args.codec or [])
    return PhoneSettings(
        server=server,
        user=args.user,
        password=args.password,
        local_host=local_host,
        local_port=local_port,
        rtp_ports=args.rtp_ports,
        codecs=codecs or AUDIO_CODECS,
    )


def _decode(path: Path) -> Pcm:
    """The --play file as mono samples at PLAY_RATE; ValueError (one line) if unreadable."""
    try:
        pcm = read_audio(path, PLAY_RATE)
    except AudioFileError as exc:
        raise ValueError(f"--play: {' '.join(str(exc).split())}") from None
    if not len(pcm):
        raise ValueError(f"--play: {path}: holds no audio")
    return pcm


def _source_address(host: str) -> str:
    """The local address the kernel would use towards `host` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((host, 9))
        return str(probe.getsockname()[0])


async def _session(
    phone: Phone, args: argparse.Namespace, audio: Pcm | None, outcome: Outcome
) -> None:
    if args.register:
        response = await phone.register(args.expires)
        if response.status >= 300:
            raise CallFailed(response.status, response.reason)
        outcome.registered = True
        log.info("registered as %s for %d s", args.user, phone.registered_expires)
    if args.call:
        call = await phone.call(args.call, _provisional)
    elif args.answer:
        call = await _answer_one(phone)
    else:
        await asyncio.sleep(args.duration or 0)
        return
    outcome.answered = True
    await _converse(call, args, audio)


def _provisional(response: Response) -> None:
    if response.status > 100:
        log.info("%d %s", response.status, response.reason)


async def _answer_one(phone: Phone) -> Call:
    phone.accepting = True
    while True:
        incoming = await phone.incoming.get()
        try:
            return await phone.answer(incoming)
        except CallFailed as exc:
            log.info("incoming call not answered: %s", exc)
        finally:
            phone.accepting = False


async def _converse(call: Call, args: argparse.Namespace, audio: Pcm | None) -> None:
    """Media for the life of the call: it ends at --duration, else when what we send has
    been sent, else when the far end hangs up (or --timeout)."""
    call.on_dtmf = lambda digit: print(f"dtmf: {digit}", flush=True)
    if args.record:
        call.record(args.record)
    sending: list[asyncio.Task[object]] = []
    if audio is not None:
        sending.append(asyncio.create_task(call.play(audio)))
    if args.dtmf:
        sending.append(asyncio.create_task(call.send_dtmf(args.dtmf)))
    helpers: list[asyncio.Task[object]] = list(sending)
    if args.hold:
        helpers.append(asyncio.create_task(_hold_and_resume(call, args.hold)))
    try:
        ended: asyncio.Task[object] = asyncio.create_task(call.ended.wait())
        helpers.append(ended)
        if args.duration is not None:
            script: asyncio.Task[object] = asyncio.create_task(asyncio.sleep(args.duration))
        elif sending:
            script = asyncio.create_task(_all_sent(sending))
        else:
            script = ended
        helpers.append(script)
        await asyncio.wait({script, ended}, return_when=asyncio.FIRST_COMPLETED)
        for task in helpers:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        if call.ended_by_peer:
            log.info("the far end hung up")
        else:
            await call.hangup()


async def _all_sent(tasks: list[asyncio.Task[object]]) -> None:
    await asyncio.gather(*tasks)
    await asyncio.sleep(TAIL_SECONDS)


async def _hold_and_resume(call: Call, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await call.hold()
    await asyncio.sleep(seconds)
    await call.resume()
