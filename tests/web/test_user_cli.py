"""`ipbx user create|list|delete`: the web administration's users from the command line;
the password is read from stdin and kept only as an argon2 hash."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ipbx.cli import main
from ipbx.store import Store


def test_the_cli_creates_lists_and_deletes_users(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "ipbx.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")

    def create(name: str, password: str, *options: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main(["user", "create", name, "--config", str(config), *options])

    assert create("office", "long enough pass", "--role", "admin") == 0
    assert create("acme-boss", "another long one", "--role", "supervisor", "--tenant", "acme") == 0
    assert create("short", "2short", "--role", "admin") == 2
    assert "password: at least 8 characters" in capsys.readouterr().err
    assert main(["user", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "acme-boss  acme  supervisor",
        "office  default  admin",
    ]
    store = Store(f"sqlite:///{tmp_path / 'data' / 'ipbx.db'}")
    try:
        stored = store.admin_user("office")
        assert stored is not None and stored.password_hash.startswith("$argon2id$")
        assert "long enough pass" not in stored.password_hash
    finally:
        store.close()
    assert main(["user", "delete", "office", "--config", str(config)]) == 0
    assert main(["user", "delete", "office", "--config", str(config)]) == 1
    assert main(["user", "list", "--config", str(config), "--tenant", "default"]) == 0
    assert capsys.readouterr().out == ""
