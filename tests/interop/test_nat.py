"""Phones behind a real NAT (tests/support/netns.py): network namespaces, veth pairs and
an iptables MASQUERADE router. ipbx runs on the public side with its embedded media
default (RTP on every interface, SDP with the address each phone reaches it on); baresip
and `ipbx phone` sit on a private 10.77.0.0/24 behind one NAT, another `ipbx phone` on the
public side. Every call is checked by tone frequency both ways: the caller plays 1 kHz,
the callee 700 Hz.

The NAT forgets an idle UDP mapping after `udp_timeout` seconds (Linux's own default is
30 s, 120 s once a flow is two-way); the tests shorten it so that half a minute of
silence stands for the minutes a real call can be held.
"""

from __future__ import annotations

import sys
import time
import wave
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.baresip import TOLERANCE_HZ, start_baresip
from tests.support.netns import (
    NAT_WAN,
    NAT_WAN_MOVED,
    NEEDS_NAMESPACES,
    SERVER_PUBLIC,
    SERVER_WAN,
    Host,
    NatLab,
    run_ipbx_in,
)
from tests.support.processes import stop_process
from tests.support.server import CALLEE, CALLER, IpbxServer
from tests.support.softphone import Audio, analyse, ipbx_phone, write_tone

pytestmark = NEEDS_NAMESPACES

SIP_PORT = 5060
CALLER_HZ, CALLEE_HZ = 1000, 700


@dataclass(frozen=True)
class Seat:
    """Which phone program, on which host of the lab."""

    program: str  # "baresip" or "ipbx phone"
    where: str  # "lan1", "lan2" (behind the NAT) or "public"

    def __str__(self) -> str:
        return f"{self.program.replace(' ', '-')}-{self.where}"

    def host(self, lab: NatLab) -> Host:
        return {"lan1": lab.lan1, "lan2": lab.lan2, "public": lab.public}[self.where]

    @property
    def server(self) -> str:
        """The address this phone reaches ipbx at."""
        return SERVER_PUBLIC if self.where == "public" else SERVER_WAN


BARESIP_LAN = Seat("baresip", "lan1")
PHONE_LAN = Seat("ipbx phone", "lan2")
PHONE_PUBLIC = Seat("ipbx phone", "public")


@dataclass
class Heard:
    """What a phone recorded, once its call is over."""

    path: Path | None = None
    log: str = ""

    def audio(self) -> Audio:
        assert self.path is not None
        if self.path.is_dir():  # baresip's sndfile folder: the decoded side
            dumps = sorted(self.path.glob("dump-*-dec.wav"))
            assert dumps, f"baresip recorded nothing in {self.path}"
            return analyse(dumps[-1])
        return analyse(self.path)


def wait_registered(server: IpbxServer, text: str, timeout: float = 15) -> None:
    """Wait until the registrar has logged `text` ("1001 registered ...")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"never logged {text!r}:\n{server.log_tail()}")


@contextmanager
def answering(
    seat: Seat, lab: NatLab, server: IpbxServer, workdir: Path, *extra: str, seconds: float = 6
) -> Iterator[Heard]:
    """`seat` registered as 1001, answering the next call with 700 Hz for `seconds` (it
    hangs up then); `extra`: more `ipbx phone` arguments. The recording once the block
    ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    tone = write_tone(workdir / "callee.wav", CALLEE_HZ, seconds)
    host = seat.host(lab)
    heard = Heard()
    if seat.program == "baresip":
        process = start_baresip(
            workdir, registrar_port=SIP_PORT, user=CALLEE, audio_file=tone, seconds=40,
            host=host.address, registrar_host=seat.server, namespace=host,
        )  # fmt: skip
        try:
            wait_registered(server, f"{CALLEE.number} registered")
            yield heard
        finally:
            stop_process(process)
        heard.path = workdir / "snd"
        return
    recording = workdir / "heard.wav"
    with ipbx_phone(
        workdir, SIP_PORT, CALLEE,
        "--register", "--answer", "--play", str(tone), "--record", str(recording),
        "--timeout", "60", *extra, server_host=seat.server, namespace=host,
    ) as phone:  # fmt: skip
        phone.wait_for("registered as", 15)
        yield heard
        status, out = phone.finish(60)
        assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log
    heard.path, heard.log = recording, phone.log


def calling(
    seat: Seat, lab: NatLab, server: IpbxServer, workdir: Path, seconds: float, *extra: str
) -> Heard:
    """`seat`, as 1000, calls 1001 playing 1 kHz for `seconds`; what it heard."""
    workdir.mkdir(parents=True, exist_ok=True)
    tone = write_tone(workdir / "caller.wav", CALLER_HZ, seconds)
    host = seat.host(lab)
    if seat.program == "baresip":
        process = start_baresip(
            workdir, registrar_port=SIP_PORT, user=CALLER, audio_file=tone,
            dial=CALLEE.number, seconds=round(seconds) + 10,
            host=host.address, registrar_host=seat.server, namespace=host,
        )  # fmt: skip
        try:
            process.wait(seconds + 20)
        finally:
            stop_process(process)
        return Heard(workdir / "snd")
    recording = workdir / "heard.wav"
    with ipbx_phone(
        workdir, SIP_PORT, CALLER,
        "--call", CALLEE.number, "--play", str(tone), "--record", str(recording),
        "--duration", str(seconds), "--timeout", str(seconds + 30), *extra,
        server_host=seat.server, namespace=host,
    ) as phone:  # fmt: skip
        status, out = phone.finish(seconds + 40)
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log
    return Heard(recording, phone.log)


def assert_heard(heard: Heard, hz: int, who: str, server: IpbxServer) -> None:
    audio = heard.audio()
    assert audio.seconds >= 1.0, f"{who} heard {audio}\n{server.log_tail()}"
    assert audio.dominant_hz == pytest.approx(hz, abs=TOLERANCE_HZ), f"{who} heard {audio}"


def talk(
    lab: NatLab, server: IpbxServer, workdir: Path, caller: Seat, callee: Seat,
    seconds: float = 4, caller_extra: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """`caller` calls `callee` through ipbx; each must hear the other's tone."""
    with answering(callee, lab, server, workdir / "callee") as heard_by_callee:
        heard_by_caller = calling(caller, lab, server, workdir / "caller", seconds, *caller_extra)
    assert_heard(heard_by_caller, CALLEE_HZ, f"the caller ({caller})", server)
    assert_heard(heard_by_callee, CALLER_HZ, f"the callee ({callee})", server)


@contextmanager
def nat_lab(
    workdir: Path,
    *,
    random_ports: bool = False,
    udp_timeout: int = 30,
    ip_forward: bool = False,
    **ipbx: Any,
) -> Iterator[tuple[NatLab, IpbxServer]]:
    """The lab, with ipbx serving in its server namespace (IP forwarding on there, before
    ipbx starts, with `ip_forward`)."""
    with ExitStack() as stack:
        lab = NatLab(random_ports=random_ports, udp_timeout=udp_timeout)
        stack.callback(lab.close)
        if ip_forward:
            lab.server.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        server = run_ipbx_in(lab.server, workdir / "ipbx", **ipbx)
        stack.callback(server.stop)
        yield lab, server


PAIRS = [
    (BARESIP_LAN, PHONE_PUBLIC),
    (PHONE_PUBLIC, BARESIP_LAN),
    (PHONE_LAN, BARESIP_LAN),
    (BARESIP_LAN, PHONE_LAN),
    (PHONE_LAN, PHONE_PUBLIC),
    (PHONE_PUBLIC, PHONE_LAN),
]


@pytest.mark.parametrize(("caller", "callee"), PAIRS, ids=[f"{a}_to_{b}" for a, b in PAIRS])
def test_phones_behind_a_nat_and_on_the_public_side_talk_both_ways(
    tmp_path: Path, caller: Seat, callee: Seat
) -> None:
    with nat_lab(tmp_path) as (lab, server):
        talk(lab, server, tmp_path, caller, callee)
    if BARESIP_LAN in (caller, callee):
        # baresip behind the NAT registers its private Contact: the registrar finds it
        # behind NAT, and it is reached at its mapping. (`ipbx phone` behind the same NAT
        # is not flagged by the registrar; its calls work both ways all the same.)
        assert "(behind NAT)" in server.log_path.read_text()


def test_with_the_embedded_media_default_a_phone_on_another_host_hears_the_echo(
    tmp_path: Path,
) -> None:
    """No media address configured: RTP binds every interface and the SDP the public
    phone gets carries 203.0.113.1, the address it reaches SIP on (not 127.0.0.1), so
    the echo test sends its own tone back to it."""
    tone = write_tone(tmp_path / "tone.wav", CALLER_HZ, 3)
    recording = tmp_path / "echo.wav"
    with nat_lab(tmp_path) as (lab, server), ipbx_phone(
        tmp_path, SIP_PORT, CALLER,
        "--call", "9196", "--play", str(tone), "--record", str(recording), "--timeout", "20",
        server_host=SERVER_PUBLIC, namespace=lab.public,
    ) as phone:  # fmt: skip
        status, out = phone.finish(30)
    assert (status, out.splitlines()[-1]) == (0, "result: answered"), phone.log
    assert_heard(Heard(recording), CALLER_HZ, "the phone calling the echo test", server)
    assert "SDP carries the address each phone reaches SIP on" in server.log_path.read_text()


SYMMETRIC = [(BARESIP_LAN, PHONE_PUBLIC), (PHONE_PUBLIC, PHONE_LAN), (PHONE_LAN, BARESIP_LAN)]


@pytest.mark.parametrize(("caller", "callee"), SYMMETRIC, ids=[f"{a}_to_{b}" for a, b in SYMMETRIC])
def test_a_symmetric_nat_that_changes_ports_per_destination(
    tmp_path: Path, caller: Seat, callee: Seat
) -> None:
    """MASQUERADE --random gives every flow its own random port: SIP and RTP come from
    ports the phone never wrote in Via, Contact or SDP. Signalling goes back to the
    REGISTER's source, media to where RTP comes from (latching, RFC 4961)."""
    with nat_lab(tmp_path, random_ports=True) as (lab, server):
        talk(lab, server, tmp_path, caller, callee)


def test_with_one_listener_per_address_answers_leave_from_the_one_the_phone_reached(
    tmp_path: Path,
) -> None:
    """Listeners on the WAN address and on loopback, the same port: the phones behind
    the NAT reach the WAN one, and every answer and request to them leaves through it,
    naming it in Via, Contact and SDP (RFC 3261 §18.2.2)."""
    listen = (f"udp://{SERVER_WAN}:{SIP_PORT}", f"udp://127.0.0.1:{SIP_PORT}")
    with nat_lab(tmp_path, listen=listen) as (lab, server):
        talk(lab, server, tmp_path, PHONE_LAN, BARESIP_LAN)


def test_stun_binding_requests_on_the_sip_port_tell_a_phone_its_mapping(tmp_path: Path) -> None:
    """RFC 5626 §4.4.1: a phone behind NAT keeps its UDP mapping with STUN binding
    requests to the SIP port; the answer carries the address the NAT gave it. A CRLF
    keep-alive gets no answer and does no harm."""
    with nat_lab(tmp_path, random_ports=True) as (lab, server):
        mapped = lab.lan1.run(sys.executable, "-c", _STUN_CLIENT, SERVER_WAN, str(SIP_PORT))
    host, port = mapped.split()
    assert host == NAT_WAN
    assert int(port) != 5062  # --random: not the phone's own port
    assert "Traceback" not in server.log_path.read_text()


_STUN_CLIENT = """
import os, socket, struct, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 5062))
sock.settimeout(5)
server = (sys.argv[1], int(sys.argv[2]))
sock.sendto(b"\\r\\n\\r\\n", server)
transaction = os.urandom(12)
sock.sendto(struct.pack("!HHI12s", 1, 0, 0x2112A442, transaction), server)
answer = sock.recv(1500)
kind, _, cookie, echoed = struct.unpack_from("!HHI12s", answer)
assert (kind, cookie, echoed) == (0x0101, 0x2112A442, transaction), answer
port = struct.unpack_from("!H", answer, 26)[0] ^ 0x2112
address = bytes(a ^ b for a, b in zip(answer[28:32], (0x2112A442).to_bytes(4, "big")))
print(socket.inet_ntoa(address), port)
"""


def tail(path: Path, seconds: float) -> Audio:
    """The last `seconds` of a recording, analysed like a whole one."""
    with wave.open(str(path), "rb") as wav:
        rate, frames = wav.getframerate(), wav.getnframes()
        wav.setpos(max(0, frames - int(rate * seconds)))
        tail_frames = wav.readframes(frames)
    part = path.with_name(f"tail-{path.name}")
    with wave.open(str(part), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(tail_frames)
    return analyse(part)


@pytest.mark.parametrize("random_ports", [False, True], ids=["cone", "symmetric"])
def test_a_held_call_outlives_the_nat_timeout(tmp_path: Path, random_ports: bool) -> None:
    """The NAT forgets idle mappings after 3 s; the public phone holds the call to the
    NATed phone for 10 s. ipbx's OPTIONS (qualify, every second here) keep the NATed
    phone's signalling mapping open, so the re-INVITE and the BYE reach it; its RTP
    mapping lapses while it is silent and ipbx latches onto the new one when it speaks
    again: both hear each other after the resume."""

    def qualify_every_second(config: dict[str, Any]) -> None:
        config["sip"].update(qualify_interval=1)

    with ExitStack() as stack:
        lab, server = stack.enter_context(
            nat_lab(tmp_path, random_ports=random_ports, udp_timeout=3, edit=qualify_every_second)
        )
        with answering(PHONE_LAN, lab, server, tmp_path / "callee", seconds=40) as heard_by_callee:
            heard_by_caller = calling(
                PHONE_PUBLIC, lab, server, tmp_path / "caller", 24, "--hold", "8"
            )
    # The caller's hang-up reached the NATed phone (it did not end on its own 40 s tone).
    assert "hung up by the far end" in heard_by_callee.log, heard_by_callee.log
    for heard, hz, who in ((heard_by_caller, CALLEE_HZ, "caller"),
                           (heard_by_callee, CALLER_HZ, "callee")):  # fmt: skip
        assert heard.path is not None
        after_resume = tail(heard.path, 3)
        assert after_resume.dominant_hz == pytest.approx(hz, abs=TOLERANCE_HZ), (
            f"the {who} heard {after_resume} after the resume\n{server.log_tail()}"
        )


def test_a_caller_whose_mapping_changed_while_it_held_is_reached_at_the_new_one(
    tmp_path: Path,
) -> None:
    """The NATed caller (not registered: nothing keeps its mapping open) holds after 6 s
    and resumes 6 s later; the symmetric NAT forgets an idle mapping after 3 s, so its
    hold and resume re-INVITEs come from new ports. The callee hangs up a second after
    the resume, and its hang-up must reach the caller at the newest mapping."""
    with ExitStack() as stack:
        lab, server = stack.enter_context(nat_lab(tmp_path, random_ports=True, udp_timeout=3))
        with answering(
            PHONE_PUBLIC, lab, server, tmp_path / "callee", "--duration", "13", seconds=30
        ):
            heard_by_caller = calling(
                PHONE_LAN, lab, server, tmp_path / "caller", 40, "--hold", "6"
            )
    assert "hung up by the far end" in heard_by_caller.log, heard_by_caller.log
    assert "now reached at" in server.log_path.read_text()


def test_a_phone_whose_mapping_changes_is_reached_after_its_next_refresh(tmp_path: Path) -> None:
    """The NAT moves to another public address while the phone is registered; once its
    old mapping has lapsed, its next REGISTER comes from the new one, and a call reaches
    it there."""

    def quick_refresh(config: dict[str, Any]) -> None:
        config["sip"].update(min_expires=5, qualify_interval=3600)

    registered = f"{CALLEE.number} registered 1 contact(s) from Address(transport='UDP', host="
    with ExitStack() as stack:
        lab, server = stack.enter_context(nat_lab(tmp_path, udp_timeout=2, edit=quick_refresh))
        with answering(PHONE_LAN, lab, server, tmp_path / "callee", "--expires", "6",
                       "--duration", "3") as heard_by_callee:  # fmt: skip
            wait_registered(server, f"{registered}'{NAT_WAN}'")
            lab.move_nat()
            wait_registered(server, f"{registered}'{NAT_WAN_MOVED}'")
            heard_by_caller = calling(PHONE_PUBLIC, lab, server, tmp_path / "caller", 6)
    assert_heard(heard_by_caller, CALLEE_HZ, "the caller", server)
    assert_heard(heard_by_callee, CALLER_HZ, "the moved callee", server)


KERNEL_PAIRS = [(PHONE_LAN, PHONE_PUBLIC), (BARESIP_LAN, PHONE_PUBLIC)]


@pytest.mark.parametrize(
    ("caller", "callee"), KERNEL_PAIRS, ids=[f"{a}_to_{b}" for a, b in KERNEL_PAIRS]
)
def test_with_the_kernel_relay_phones_across_the_nat_talk_both_ways(
    tmp_path: Path, caller: Seat, callee: Seat
) -> None:
    """media.relay: kernel, IP forwarding on in the server's namespace: a second into the
    call the kernel forwards its RTP between the NATed phone (at its mapping, from
    198.51.100.1) and the public one (from 203.0.113.1); both still hear each other's
    tone, and when the call ends ipbx takes the legs back with what the kernel counted."""

    def kernel(config: dict[str, Any]) -> None:
        config["media"]["relay"] = "kernel"

    with nat_lab(tmp_path, ip_forward=True, edit=kernel) as (lab, server):
        talk(lab, server, tmp_path, caller, callee, seconds=5)
    log = server.log_path.read_text()
    [line] = [line for line in log.splitlines() if "forwarded in the kernel" in line]
    # About 3 s of each phone's 50 packets a second, once the bridge has stood 1 s.
    counts = [int(word) for word in line.split("home, ")[1].split() if word.isdigit()]
    assert len(counts) == 2 and min(counts) > 100, line
    assert "media.relay: kernel" not in log, log  # no problem reported at start
