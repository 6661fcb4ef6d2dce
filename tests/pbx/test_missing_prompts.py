"""A prompt that cannot be made is logged and skipped, never a failed call. On a machine
without espeak-ng the server says at start which prompt of its file cannot be spoken
(FILE:LINE), and a caller into an IVR whose greeting is text is answered all the same
and picks an option with a key. A greeting file that went bad after start is skipped
too: the menu waits for a key and, with none, goes to its time-out destination."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.softphone import ipbx_phone, write_tone

CALLER, CALLEE, _ = extension_range(3)
GREETING = "Welcome. For Bob press 1."


def test_ivr_with_a_text_greeting_takes_digits_without_espeak(tmp_path: Path) -> None:
    # A PATH with no programs on it: the server's Python is run by its absolute path.
    nothing = tmp_path / "empty-bin"
    nothing.mkdir()

    def check(server: IpbxServer) -> None:
        config_lines = server.config_path.read_text().splitlines()
        greeting_line = next(
            number for number, text in enumerate(config_lines, 1) if "greeting:" in text
        )
        log = server.log_tail()
        assert "espeak-ng is not installed (Debian package espeak-ng)" in log
        assert (
            f"{server.config_path}:{greeting_line}: ivrs[0].greeting: {GREETING!r} needs "
            "espeak-ng; it will be skipped"
        ) in log
        _caller_reaches_bob(server, tmp_path, dtmf="1")
        assert f"prompt {GREETING!r} skipped: espeak-ng not found" in server.log_tail()

    _with_menu(tmp_path, GREETING, check, env={"PATH": str(nothing)})


def test_ivr_whose_greeting_file_went_bad_takes_digits(tmp_path: Path) -> None:
    greeting = write_tone(tmp_path / "greeting.wav", 440, 2)

    def check(server: IpbxServer) -> None:
        greeting.write_text("overwritten with text after the server started\n")
        # No key: a digit sent at once could stop the greeting before it fails.
        _caller_reaches_bob(server, tmp_path, dtmf="")
        assert f"prompt {greeting} skipped: {greeting}: cannot decode audio" in server.log_tail()

    _with_menu(tmp_path, f"file:{greeting}", check)


def _with_menu(
    tmp_path: Path,
    greeting: str,
    check: Callable[[IpbxServer], None],
    env: Mapping[str, str] | None = None,
) -> None:
    """Run `check` on a server whose number 500 is a menu: `greeting`, then 1 for Bob;
    with no key in 2 s it goes to Bob as well."""

    def edit(config: dict[str, Any]) -> None:
        config["ivrs"] = [
            {
                "name": "main",
                "greeting": greeting,
                "options": {"1": f"extension:{CALLEE.number}"},
                "timeout_seconds": 2,
                "retries": 0,
                "timeout_destination": f"extension:{CALLEE.number}",
            }
        ]
        config["numbers"] = [{"number": "500", "destination": "ivr:main"}]

    server = start_configured_ipbx(tmp_path / "ipbx", edit, env=env)
    try:
        check(server)
    finally:
        code = server.stop()
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail()}")


def _caller_reaches_bob(server: IpbxServer, tmp_path: Path, dtmf: str) -> None:
    """1000 calls 500 and presses `dtmf` (or nothing); Bob (1001) is rung and answers."""
    with ipbx_phone(
        tmp_path, server.port, CALLEE, "--register", "--answer", "--timeout", "30"
    ) as callee:
        callee.wait_for("registered as")
        with ipbx_phone(
            tmp_path, server.port, CALLER,
            "--call", "500", *(("--dtmf", dtmf) if dtmf else ()), "--duration", "6",
            "--timeout", "20",
        ) as caller:  # fmt: skip
            caller_status, caller_out = caller.finish(timeout=30)
        callee_status, callee_out = callee.finish(timeout=30)
    assert (caller_status, caller_out.splitlines()[-1]) == (0, "result: answered"), caller.log
    assert (callee_status, callee_out.splitlines()[-1]) == (0, "result: answered"), callee.log
    [record] = call_records(server)
    assert record.path == f"ivr:main,extension:{CALLEE.number}"
    assert record.digits == dtmf
