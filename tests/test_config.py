"""The YAML configuration: the documented sample loads, bad files name file:line: field."""

import stat
from pathlib import Path

import pytest

from ipbx.config import DEMO_ACCOUNTS_FILE, ListenAddress, load_config
from ipbx.configfile import ConfigError

CONTRACT = """\
data_dir: ./data
sip:
  listen: [udp://127.0.0.1:5060, tcp://127.0.0.1:5060]
media:
  address: 127.0.0.1
  rtp_ports: 20000-20999
extensions:
  - {number: "1000", name: Alice, password: secret1000}
  - {number: "1001", name: Bob, password: secret1001}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ipbx.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


def test_the_documented_sample_loads_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(write(tmp_path, CONTRACT))
    assert config.data_dir == tmp_path / "data"
    assert config.store_url == f"sqlite:///{tmp_path / 'data' / 'ipbx.db'}"
    assert config.sip.listen == [
        ListenAddress(transport="udp", host="127.0.0.1", port=5060),
        ListenAddress(transport="tcp", host="127.0.0.1", port=5060),
    ]
    assert config.media.address == "127.0.0.1"
    assert config.media.rtp_ports == (20000, 20999)
    assert [(e.number, e.name, e.password) for e in config.extensions] == [
        ("1000", "Alice", "secret1000"),
        ("1001", "Bob", "secret1001"),
    ]
    assert config.sip.realm == "ipbx"
    assert config.echo_test == "9196"


def test_defaults_cover_every_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None)
    assert [str(address) for address in config.sip.listen] == [
        "udp://0.0.0.0:5060",
        "tcp://0.0.0.0:5060",
        "tls://0.0.0.0:5061",
        "wss://0.0.0.0:8089",
    ]
    assert (config.sip.min_expires, config.sip.default_expires, config.sip.max_expires) == (
        60,
        3600,
        3600,
    )
    assert config.log_level == "info"
    assert config.database_url is None


def test_listen_urls_accept_ipv6_and_websocket(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, "sip:\n  listen: ['udp://[::1]:5070', wss://0.0.0.0:8089, tls://h]\n")
    )
    assert config.sip.listen == [
        ListenAddress(transport="udp", host="::1", port=5070),
        ListenAddress(transport="wss", host="0.0.0.0", port=8089),
        ListenAddress(transport="tls", host="h", port=5061),
    ]
    assert str(config.sip.listen[0]) == "udp://[::1]:5070"


def test_unquoted_numbers_are_strings_and_leading_zeros_survive(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "extensions:\n  - {number: 1000, password: 1234}\n  - {number: 0100, password: abcd}\n",
        )
    )
    assert [(e.number, e.password) for e in config.extensions] == [
        ("1000", "1234"),
        ("0100", "abcd"),
    ]


def test_postgresql_url_is_accepted(tmp_path: Path) -> None:
    url = "postgresql+psycopg://ipbx:pw@db/ipbx"
    config = load_config(write(tmp_path, f"database_url: {url}\n"))
    assert config.store_url == url


class TestDemoTenant:
    def test_first_start_generates_private_passwords(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        config = load_config(None)
        assert [(e.number, e.name) for e in config.extensions] == [
            ("1000", "Alice"),
            ("1001", "Bob"),
            ("1002", "Carol"),
            ("1003", "Dave"),
        ]
        assert len({e.password for e in config.extensions}) == 4
        accounts = tmp_path / "data" / DEMO_ACCOUNTS_FILE
        assert stat.S_IMODE(accounts.stat().st_mode) == 0o600

    def test_restart_reuses_the_passwords(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        assert load_config(None).extensions == load_config(None).extensions

    def test_another_data_dir_gets_other_passwords(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        monkeypatch.chdir(tmp_path / "a")
        first = load_config(None).extensions
        monkeypatch.chdir(tmp_path / "b")
        assert load_config(None).extensions != first

    def test_a_damaged_accounts_file_is_reported(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / DEMO_ACCOUNTS_FILE).write_text(
            "extensions:\n  - {number: '1000', password: x}\n"
        )
        with pytest.raises(ConfigError, match=r"demo-accounts.yaml:2: extensions\[0\].password"):
            load_config(None)


class TestErrorsNameFileLineAndField:
    def test_short_password(self, tmp_path: Path) -> None:
        text = CONTRACT.replace("secret1001", "abc")
        assert error_of(write(tmp_path, text)) == (
            f"{tmp_path / 'ipbx.yaml'}:9: extensions[1].password: "
            "String should have at least 4 characters"
        )

    def test_missing_password(self, tmp_path: Path) -> None:
        text = CONTRACT.replace(", password: secret1001", "")
        assert error_of(write(tmp_path, text)) == (
            f"{tmp_path / 'ipbx.yaml'}:9: extensions[1].password: Field required"
        )

    def test_wrong_type(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "sip:\n  realm: x\n  min_expires: soon\n"))
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:3: sip.min_expires: ")
        assert "valid integer" in message

    def test_unknown_key(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "sip:\n  lisen: [udp://0.0.0.0:5060]\n"))
        assert message == f"{tmp_path / 'ipbx.yaml'}:2: sip.lisen: unknown key"

    @pytest.mark.parametrize(
        "url",
        ["foo://0.0.0.0:5060", "udp://[::1:5060", "udp://0.0.0.0:99999", "ws://0.0.0.0", "udp://"],
    )
    def test_bad_listen_url(self, tmp_path: Path, url: str) -> None:
        message = error_of(
            write(tmp_path, f"sip:\n  listen:\n    - udp://0.0.0.0:5060\n    - '{url}'\n")
        )
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:4: sip.listen[1]: ")

    @pytest.mark.parametrize(
        "origin", ["pbx.example.com", "ftp://pbx.example.com", "https://pbx.example.com/phone"]
    )
    def test_bad_websocket_origin(self, tmp_path: Path, origin: str) -> None:
        message = error_of(
            write(tmp_path, f"sip:\n  websocket_origins:\n    - '*'\n    - '{origin}'\n")
        )
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:4: sip.websocket_origins[1]: ")

    @pytest.mark.parametrize("ports", ["20001-20999", "20000-20000", "80-1000", "20000-70000", "x"])
    def test_bad_port_range(self, tmp_path: Path, ports: str) -> None:
        message = error_of(write(tmp_path, f"media:\n  rtp_ports: {ports}\n"))
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:2: media.rtp_ports: ")

    def test_bad_media_address(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "media:\n  address: 10.0.0.256\n"))
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:2: media.address: ")

    def test_duplicate_numbers_point_at_the_second(self, tmp_path: Path) -> None:
        text = CONTRACT.replace('"1001"', '"1000"')
        assert error_of(write(tmp_path, text)) == (
            f"{tmp_path / 'ipbx.yaml'}:9: extensions[1].number: "
            "number 1000 is already used by extensions[0]"
        )

    def test_non_digit_number(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "extensions:\n  - number: alice\n    password: abcd\n"))
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:2: extensions[0].number: ")

    def test_missing_field_points_at_its_item(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "log_level: info\nextensions:\n  - number: '1'\n"))
        assert message == f"{tmp_path / 'ipbx.yaml'}:3: extensions[0].password: Field required"

    def test_every_error_is_listed(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "log_level: loud\nmedia:\n  rtp_ports: 1-2\n"))
        assert [line.split(": ")[1] for line in message.splitlines()] == [
            "log_level",
            "media.rtp_ports",
        ]

    def test_duplicate_yaml_key(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "sip:\n  realm: a\n  realm: b\n"))
        assert message == f"{tmp_path / 'ipbx.yaml'}:3: realm: duplicate key"

    def test_yaml_syntax_error(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "sip:\n  listen: [udp://0.0.0.0:5060\nmedia: {}\n"))
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:3: ")

    def test_document_that_is_not_a_mapping(self, tmp_path: Path) -> None:
        message = error_of(write(tmp_path, "- 1\n- 2\n"))
        assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:1: ")

    def test_missing_file(self, tmp_path: Path) -> None:
        message = error_of(tmp_path / "nope.yaml")
        assert message == f"{tmp_path / 'nope.yaml'}: cannot read: No such file or directory"

    def test_empty_file_is_the_default(self, tmp_path: Path) -> None:
        assert load_config(write(tmp_path, "")).extensions == []


def test_passwords_stay_out_of_logged_reprs(tmp_path: Path) -> None:
    assert "secret1000" not in repr(load_config(write(tmp_path, CONTRACT)))


def test_expires_limits_must_be_ordered(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "sip:\n  min_expires: 600\n  default_expires: 300\n"))
    assert message == (
        f"{tmp_path / 'ipbx.yaml'}:1: sip: need min_expires <= default_expires <= max_expires"
    )
