"""SIPp as a peer of the interop matrix: it places the call (an authenticated INVITE),
replays its RTP from pcaps (a tone of its own, made here, and the RFC 4733 pcaps Debian's
sip-tester ships), holds and resumes with re-INVITEs, and hangs up or waits for the BYE.
The scenario is matrix_sipp_caller.xml with the parts the cell's plan decides filled in.
"""

from __future__ import annotations

from pathlib import Path

from tests.interop.matrix_peers import (
    DIGITS,
    GRACE,
    HANG_UP_AT,
    HOLD_AT,
    RESUME_AT,
    MatrixPeer,
    Outcome,
    Plan,
)
from tests.support.ports import LOOPBACK
from tests.support.sipp import start_sipp, write_rtp_pcap, write_users_csv

SIPP_SDP = """\
      v=0
      o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port+4] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a={direction}
"""


def in_dialog(method: str, cseq: int, sdp: str = "") -> str:
    """A SIPp <send> of a request within the call's dialog (along its route set)."""
    headers = [
        f"{method} [next_url] SIP/2.0",
        "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
        "[routes]",
        "Max-Forwards: 70",
        "From: <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag00[call_number]",
        "To: <sip:[service]@[remote_ip]>[peer_tag_param]",
        "Call-ID: [call_id]",
        f"CSeq: {cseq} {method}",
    ]
    if sdp:
        headers += [
            "Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>",
            "Content-Type: application/sdp",
            "Content-Length: [len]",
        ]
    else:
        headers.append("Content-Length: 0")
    lines = "".join(f"      {line}\n" for line in headers)
    retrans = ' retrans="500"' if method != "ACK" else ""
    body = f"\n{sdp}" if sdp else ""
    return f"  <send{retrans}>\n    <![CDATA[\n\n{lines}{body}\n    ]]>\n  </send>"


def reinvite(cseq: int, sdp: str) -> str:
    """A re-INVITE (hold or resume), its 200 and the ACK."""
    answered = '  <recv response="100" optional="true"/>\n  <recv response="200"/>'
    return "\n".join([in_dialog("INVITE", cseq, sdp), answered, in_dialog("ACK", cseq)])


# SIPp aborts a call on a request that comes while it pauses: the side that waits for the
# BYE waits in <recv>, the side that hangs up pauses until HANG_UP_AT first.
SIPP_BYE = "\n".join(
    [
        f'  <pause milliseconds="{int((HANG_UP_AT - RESUME_AT) * 1000)}"/>',
        in_dialog("BYE", 5),
        '  <recv response="200"/>',
    ]
)

SIPP_BYE_RECEIVED = """\
  <recv request="BYE"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>"""
SIPP_PLAY = '  <nop><action><exec play_pcap_audio="{pcap}"/></action></nop>'
DTMF_PCAP = "/usr/share/sip-tester/dtmf_2833_{}.pcap"


class SippCallerPeer(MatrixPeer):
    """SIPp placing the call, its RTP replayed from pcaps: a tone of its own, made here,
    and the RFC 4733 pcaps Debian's sip-tester ships. It cannot answer in the matrix (no
    scenario for it yet), nor hear: it neither decodes nor records what it receives."""

    def register(self) -> None:
        self.tone = write_rtp_pcap(self.workdir / "tone.pcap", self.tone_hz, HANG_UP_AT + GRACE)
        self.users = write_users_csv(self.workdir / "caller.csv", [self.user])
        self.template = (Path(__file__).parent / "matrix_sipp_caller.xml").read_text()

    def begin(self, plan: Plan) -> None:
        assert plan.call is not None and plan.hold, plan
        play_tone = SIPP_PLAY.format(pcap=self.tone)
        names = {"#": "pound", "*": "star"}
        dtmf = [SIPP_PLAY.format(pcap=DTMF_PCAP.format(names.get(d, d))) for d in DIGITS]
        dtmf_plays = "".join(f'{play}\n  <pause milliseconds="200"/>\n' for play in dtmf)
        dtmf_plays += play_tone
        sdp = {d: SIPP_SDP.format(direction=d) for d in ("sendrecv", "sendonly")}
        scenario = self.template.format(
            sdp_sendrecv=sdp["sendrecv"],
            play_tone=play_tone,
            dtmf=DIGITS if plan.send_dtmf else "no",
            dtmf_plays=dtmf_plays if plan.send_dtmf else "",
            until_hold=int(HOLD_AT * 1000) - 300 - (600 if plan.send_dtmf else 0),
            reinvite_hold=reinvite(3, sdp["sendonly"]),
            reinvite_resume=reinvite(4, sdp["sendrecv"]),
            hang_up="BYE" if plan.hang_up else "wait for BYE",
            ending=SIPP_BYE if plan.hang_up else SIPP_BYE_RECEIVED,
        )
        path = self.next_path("caller.xml")
        path.write_text(scenario)
        self.plan = plan
        self.sipp = start_sipp(
            path, f"{LOOPBACK}:{self.server_port}", "-s", plan.call, "-inf", str(self.users),
            calls=1, workdir=self.workdir, timeout=HANG_UP_AT + GRACE,
        )  # fmt: skip

    def finish(self) -> Outcome:
        result = self.sipp.finish()
        passed = (result.successful, result.failed) == (1, 0)
        return Outcome(
            answered=passed, recording=None, digits=None,
            ended_by_peer=passed and not self.plan.hang_up, log=result.errors(),
        )  # fmt: skip
