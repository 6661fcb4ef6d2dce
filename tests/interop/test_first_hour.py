"""The README's set-up as a new user runs it on a fresh Debian machine: `make serve`.

It installs the Debian packages the server runs (espeak-ng for spoken prompts,
libbcg729 for G.729) and none of the test peers, which are `make test`'s. Then, as in
"Try it": a fresh clone's `make serve` on a machine of its own (a network namespace with
its own address), and a softphone on another (baresip, in a second namespace, the two
joined by a veth pair as by a LAN) registers as 1000 with the password from
`data/demo-accounts.yaml` and calls the echo test, hearing its own tone back.

The namespaces have no route out, so pip takes its packages from a wheelhouse that
`pip download` fills beforehand, by its own settings (PIP_NO_INDEX, PIP_FIND_LINKS):
the Makefile runs unchanged and builds its own venv in the clone. Debian packages are
the machine's (`make serve` finds them installed). Namespaces need root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.first_hour import Namespace, join
from tests.support.softphone import Audio, analyse, write_tone

# The fixture clones, installs and serves once for the module's tests: minutes, not seconds.
pytestmark = pytest.mark.timeout(900)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ["espeak-ng", "libbcg729-0", "nftables"]
SERVER_ADDRESS, PHONE_ADDRESS = "10.213.0.1", "10.213.0.2"
TONE_HZ = 1000
# Creating the venv and installing ipbx into it from the wheelhouse takes a minute or two.
SERVE_TIMEOUT = 480.0
ECHO_TEST = "9196"
# baresip's whole life (-t): the call ends when its 3 s tone does.
BARESIP_SECONDS = 15


def _stub(path: Path, script: str) -> None:
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)


def test_make_serve_installs_the_servers_runtime_packages_and_only_those(
    tmp_path: Path,
) -> None:
    """On a machine where dpkg knows no package, `make serve` asks apt-get for the three
    runtime packages, then starts the server (here a stand-in `ipbx` in a ready venv)."""
    bin_dir, venv = tmp_path / "bin", tmp_path / "venv"
    bin_dir.mkdir()
    (venv / "bin").mkdir(parents=True)
    apt_log, serve_log = tmp_path / "apt-get.log", tmp_path / "ipbx.log"
    _stub(bin_dir / "dpkg-query", "exit 1")
    _stub(bin_dir / "apt-get", f'echo "$*" >> {apt_log}')
    _stub(venv / "bin" / "ipbx", f'echo "$*" >> {serve_log}')
    (venv / ".installed").touch()  # newer than pyproject.toml: the venv is up to date
    done = subprocess.run(
        ["make", "-C", str(REPO_ROOT), "serve", f"VENV={venv}", "ARGS=--config x.yaml"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert apt_log.read_text().splitlines() == [
        "update -qq",
        f"install -y -qq --no-install-recommends {' '.join(RUNTIME_PACKAGES)}",
    ]
    assert serve_log.read_text().splitlines() == ["serve --config x.yaml"]


@dataclass
class EchoCall:
    registered: bool
    answered: bool
    heard: Audio
    log: str


@pytest.fixture(scope="module")
def echo_call_to_a_fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoCall]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("baresip") is None:
        pytest.skip("needs root, iproute2 and baresip (network namespaces, a real phone)")
    work = tmp_path_factory.mktemp("first-hour")
    clone = work / "ipbx"
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(clone)], check=True, timeout=120)
    wheelhouse = work / "wheelhouse"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(wheelhouse),
         f"{clone}[dev]", "pip", "setuptools", "wheel"],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    with Namespace("fh-pbx") as server_ns, Namespace("fh-phone") as phone_ns:
        join(server_ns, SERVER_ADDRESS, phone_ns, PHONE_ADDRESS)
        serve_log = work / "make-serve.log"
        offline_pip = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
        server = server_ns.start(["make", "-C", str(clone), "serve"], serve_log, offline_pip)
        try:
            _wait_for(serve_log, "ipbx ready", SERVE_TIMEOUT, server)
            accounts = yaml.safe_load((clone / "data" / "demo-accounts.yaml").read_text())
            alice = accounts["extensions"][0]
            yield _baresip_calls_the_echo_test(phone_ns, work, alice["number"], alice["password"])
        finally:
            # make and the ipbx it started share the session it leads.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
            print(f"--- make serve log tail:\n{serve_log.read_text()[-3000:]}")


def _baresip_calls_the_echo_test(
    phone_ns: Namespace, work: Path, user: str, password: str
) -> EchoCall:
    tone = write_tone(work / "tone.wav", TONE_HZ, 3)
    config_dir, snd_dir = work / "baresip", work / "snd"
    config_dir.mkdir()
    snd_dir.mkdir()
    modules = ["g711.so", "aufile.so", "alsa.so", "sndfile.so"]
    config = [
        "poll_method epoll",
        f"sip_listen {PHONE_ADDRESS}:5060",
        f"net_interface {PHONE_ADDRESS}",
        "audio_player alsa,null",
        "audio_alert alsa,null",
        f"audio_source aufile,{tone}",
        "rtp_ports 30000-30099",
        "module_path /usr/lib/baresip/modules",
        *(f"module {module}" for module in modules),
        f"snd_path {snd_dir}",
        "module_app account.so",
        "module_app menu.so",
    ]
    (config_dir / "config").write_text("\n".join(config) + "\n")
    (config_dir / "accounts").write_text(
        f"<sip:{user}@{SERVER_ADDRESS}>;auth_pass={password};regint=60;audio_codecs=PCMU\n"
    )
    log_path = work / "baresip.log"
    dial = f"/dial sip:{ECHO_TEST}@{SERVER_ADDRESS}"
    command = ["baresip", "-f", str(config_dir), "-e", dial, "-t", str(BARESIP_SECONDS)]
    phone = phone_ns.start(command, log_path)
    try:
        phone.wait(BARESIP_SECONDS + 10)
    except subprocess.TimeoutExpired:
        phone.terminate()
        phone.wait(10)
    log = log_path.read_text(errors="replace")
    heard = sorted(snd_dir.glob("dump-*-dec.wav"))
    return EchoCall(
        registered=f"{user}@{SERVER_ADDRESS}: {{0/UDP/v4}} 200 OK (ipbx) [1 binding]" in log,
        answered=f"Call established: sip:{ECHO_TEST}@{SERVER_ADDRESS}" in log,
        heard=analyse(heard[-1]) if heard else Audio(0.0, 0.0),
        log=log,
    )


def _wait_for(log: Path, text: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never came:\n{log.read_text(errors='replace')[-3000:]}")


def test_a_fresh_clones_make_serve_registers_a_phone_and_answers_the_echo_test(
    echo_call_to_a_fresh_clone: EchoCall,
) -> None:
    call = echo_call_to_a_fresh_clone
    assert call.registered, call.log
    assert call.answered, call.log


def test_the_phone_on_another_machine_hears_its_own_tone_back(
    echo_call_to_a_fresh_clone: EchoCall,
) -> None:
    """Audio both ways: the echo test sends back what it got from the phone."""
    heard = echo_call_to_a_fresh_clone.heard
    assert heard.dominant_hz == pytest.approx(TONE_HZ, abs=20)
    assert heard.seconds >= 1.0
