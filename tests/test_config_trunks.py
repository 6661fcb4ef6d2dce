"""The trunks' configuration shape: trunks, numbers and outbound routes load as written,
and mistakes are refused with the file, line and field."""

from pathlib import Path

import pytest

from ipbx.config import load_config
from ipbx.pbx.destination import Destination, Kind
from tests.support.config_files import error_of, write

ISSUE_SHAPE = """\
extensions:
  - {number: "1001", name: Bob, password: secret1001}
trunks:
  - {name: provider1, host: "127.0.0.1:5070", transport: udp, username: ipbx, password: trunksecret,
     register: true, max_channels: 2}
  - {name: provider2, host: "127.0.0.1:5072", transport: udp, allow_from: ["127.0.0.1:5072"]}
numbers:
  - {number: "+15550100", destination: "extension:1001"}
outbound_routes:
  - {name: national, pattern: "_9NXXNXXXXXX", strip: 1, prepend: "+1",
     trunks: [provider1, provider2]}
"""


def test_the_issue_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_SHAPE))
    first, second = config.trunks
    assert (first.name, first.host, first.registration, first.max_channels) == (
        "provider1",
        ["127.0.0.1:5070"],
        True,
        2,
    )
    assert (second.registration, second.allow_from, second.max_channels) == (
        False,
        ["127.0.0.1:5072"],
        None,
    )
    assert config.numbers[0].destination == Destination(Kind.EXTENSION, "1001")
    route = config.outbound_routes[0]
    assert (route.strip, route.prepend, route.trunks) == (1, "+1", ["provider1", "provider2"])
    # `ipbx apply` and the API speak the same schema: it dumps back as it was written.
    dumped = config.model_dump()
    assert dumped["trunks"][0]["register"] is True
    assert dumped["numbers"][0]["destination"] == "extension:1001"


def test_every_trunk_option(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            "trunks:\n"
            "  - name: carrier\n"
            "    host: [sip.example.net, '10.0.0.1:5080', '[2001:db8::1]:5060']\n"
            "    transport: tls\n"
            "    domain: example.net\n"
            "    outbound_proxy: proxy.example.net:5061\n"
            "    allow_from: [192.0.2.0/24, '198.51.100.7:5060']\n"
            "    codecs: [PCMA, opus]\n"
            "    from_user: account7\n"
            "    pai: true\n"
            "    rpid: true\n"
            "    options_interval: 0\n"
            "    expires: 600\n",
        )
    )
    trunk = config.trunks[0]
    assert trunk.host == ["sip.example.net", "10.0.0.1:5080", "[2001:db8::1]:5060"]
    assert trunk.codecs == ["pcma", "opus"]
    assert (trunk.pai, trunk.rpid, trunk.options_interval, trunk.expires) == (True, True, 0, 600)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "trunks:\n  - {name: a, host: h, register: true}\n",
            "ipbx.yaml:2: trunks[0]: register: true needs username and password",
        ),
        ("trunks:\n  - {name: a, host: 'h:99999'}\n", "ipbx.yaml:2: trunks[0].host[0]: "),
        ("trunks:\n  - {name: a, host: h, transport: sctp}\n", "ipbx.yaml:2: trunks[0].transport"),
        (
            "trunks:\n  - {name: a, host: h, allow_from: [10.0.0.0/33]}\n",
            "ipbx.yaml:2: trunks[0].allow_from[0]:",
        ),
        ("trunks:\n  - {name: a, host: h, codecs: [gsm]}\n", "ipbx.yaml:2: trunks[0].codecs[0]"),
        (
            "trunks:\n  - {name: a, host: h}\n  - {name: a, host: g}\n",
            "ipbx.yaml:3: trunks[1].name: name a is already used by trunks[0]",
        ),
        (
            "trunks:\n  - {name: a, host: h}\noutbound_routes:\n"
            "  - {name: r, pattern: _X., trunks: [a, b]}\n",
            "ipbx.yaml:4: outbound_routes[0].trunks[1]: no trunk named b",
        ),
        (
            "trunks: [{name: a, host: h}]\noutbound_routes:\n"
            "  - {name: r, pattern: '_9[5-', trunks: [a]}\n",
            "ipbx.yaml:3: outbound_routes[0].pattern: '_9[5-': '[' without ']'",
        ),
        (
            "numbers:\n  - {number: '+15550100', destination: 'extension:1001'}\n"
            "  - {number: '+15550100', destination: 'extension:1002'}\n",
            "ipbx.yaml:3: numbers[1].number: number +15550100 is already used by numbers[0]",
        ),
        (
            "numbers:\n  - {number: '555-0100', destination: 'extension:1001'}\n",
            "ipbx.yaml:2: numbers[0].number: '555-0100': expected E.164",
        ),
        (
            "numbers:\n  - {number: '+15550100', destination: 'voicemale:1001'}\n",
            "ipbx.yaml:2: numbers[0].destination: unknown destination 'voicemale:1001'",
        ),
        (
            "numbers:\n  - {number: '+15550100', destination: 'extension:1001', tenant: acme}\n",
            "ipbx.yaml:2: numbers[0].tenant: 'acme': numbers route to the 'default' tenant only",
        ),
        ("country: XX\n", "ipbx.yaml:1: country: 'XX': expected one of"),
        (
            "extensions:\n  - {number: '1000', password: abcd, permission: world}\n",
            "ipbx.yaml:2: extensions[0].permission",
        ),
    ],
)
def test_mistakes_name_the_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)
