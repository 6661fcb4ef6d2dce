"""A server on a machine without espeak-ng: it says at start which prompt of its file
cannot be spoken (FILE:LINE), and a caller into an IVR whose greeting is text is
answered all the same and picks an option with a key (the greeting is skipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.records import call_records
from tests.support.server import extension_range, start_configured_ipbx
from tests.support.softphone import ipbx_phone

CALLER, CALLEE, _ = extension_range(3)
GREETING = "Welcome. For Bob press 1."


def test_ivr_with_a_text_greeting_takes_digits_without_espeak(tmp_path: Path) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["ivrs"] = [
            {
                "name": "main",
                "greeting": GREETING,
                "options": {"1": f"extension:{CALLEE.number}"},
                "timeout_seconds": 5,
            }
        ]
        config["numbers"] = [{"number": "500", "destination": "ivr:main"}]

    # A PATH with no programs on it: the server's Python is run by its absolute path.
    nothing = tmp_path / "empty-bin"
    nothing.mkdir()
    server = start_configured_ipbx(tmp_path / "ipbx", edit, env={"PATH": str(nothing)})
    try:
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
        with ipbx_phone(
            tmp_path, server.port, CALLEE, "--register", "--answer", "--timeout", "30"
        ) as callee:
            callee.wait_for("registered as")
            with ipbx_phone(
                tmp_path, server.port, CALLER,
                "--call", "500", "--dtmf", "1", "--duration", "5", "--timeout", "20",
            ) as caller:  # fmt: skip
                caller_status, caller_out = caller.finish(timeout=30)
            callee_status, callee_out = callee.finish(timeout=30)
        assert caller_out.splitlines()[-1] == "result: answered", caller.log
        assert caller_status == 0
        assert (callee_status, callee_out.splitlines()[-1]) == (0, "result: answered"), callee.log
        [record] = call_records(server)
        assert record.path == f"ivr:main,extension:{CALLEE.number}"
        assert record.digits == "1"
        assert f"prompt {GREETING!r} skipped: espeak-ng not found" in server.log_tail()
    finally:
        code = server.stop()
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail()}")
