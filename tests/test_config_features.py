"""The PBX features' configuration shape: voicemail, forwarding, groups, menus, schedules,
announcements and the blacklist load as the issue writes them, dump back the same, and
every mistake (an unknown destination, a loop, a missing prompt) is refused with the
file, line and field at load time, never at call time."""

from datetime import date
from pathlib import Path

import pytest
import yaml

from ipbx.config import Config, load_config
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.prompt import Prompt
from tests.support.config_files import error_of, write

ISSUE_SHAPE = """\
smtp: {host: 127.0.0.1, port: 8025, from: "pbx@example.com"}
extensions:
  - {number: "1000", name: Alice, password: secret1000}
  - {number: "1001", name: Bob, password: secret1001,
     voicemail: {pin: "1234", email: "bob@example.com"},
     forward: {busy: "voicemail:1001", no_answer: "voicemail:1001", no_answer_seconds: 15}}
  - {number: "1002", name: Carol, password: secret1002}
groups:
  - {name: support, strategy: ringall, members: ["1001", "1002"], ring_seconds: 10, fallback: "voicemail:1001"}
ivrs:
  - {name: main, greeting: "Welcome. For sales press 1, for support press 2.",
     options: {"1": "extension:1002", "2": "group:support"}, timeout_seconds: 5, retries: 2,
     timeout_destination: "extension:1000", invalid_destination: "hangup"}
schedules:
  - {name: office, timezone: "Europe/Kyiv", hours: {mon-fri: "09:00-18:00"}, holidays: ["2026-12-25"],
     open: "ivr:main", closed: "announcement:closed"}
announcements:
  - {name: closed, text: "We are closed. Please call again during office hours."}
blacklist:
  - {pattern: "+1555666*", message: "Your calls to this company are blocked."}
numbers:
  - {number: "+15550100", destination: "schedule:office"}
  - {number: "500", destination: "ivr:main"}
"""  # noqa: E501 - the issue's text, unwrapped

EXTENSIONS = """\
extensions:
  - {number: "1000", password: secret1000}
  - {number: "1001", password: secret1001, voicemail: {pin: "1234"}}
"""


def test_the_issue_shape_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ISSUE_SHAPE))
    assert config.smtp is not None
    assert (config.smtp.host, config.smtp.port, config.smtp.sender) == (
        "127.0.0.1",
        8025,
        "pbx@example.com",
    )
    bob = config.extensions[1]
    assert bob.voicemail is not None
    assert (bob.voicemail.pin, bob.voicemail.email) == ("1234", "bob@example.com")
    assert bob.forward.busy == Destination(Kind.VOICEMAIL, "1001")
    assert bob.forward.no_answer_seconds == 15
    assert bob.forward.always is None and not bob.dnd
    assert config.extensions[0].forward.no_answer_seconds == 20
    [group] = config.groups
    assert (group.strategy, group.members, group.ring_seconds) == ("ringall", ["1001", "1002"], 10)
    [ivr] = config.ivrs
    assert ivr.greeting == Prompt(text="Welcome. For sales press 1, for support press 2.")
    assert ivr.options == {
        "1": Destination(Kind.EXTENSION, "1002"),
        "2": Destination(Kind.GROUP, "support"),
    }
    assert (ivr.timeout_seconds, ivr.retries, ivr.direct_dial) == (5, 2, False)
    assert ivr.invalid_destination == Destination(Kind.HANGUP)
    [schedule] = config.schedules
    assert (schedule.timezone, schedule.hours) == ("Europe/Kyiv", {"mon-fri": "09:00-18:00"})
    assert schedule.holidays == [date(2026, 12, 25)]
    assert schedule.holiday is None
    assert config.announcements[0].prompt == Prompt(
        text="We are closed. Please call again during office hours."
    )
    [entry] = config.blacklist
    assert (entry.pattern, entry.extension) == ("+1555666*", None)
    assert [n.destination for n in config.numbers] == [
        Destination(Kind.SCHEDULE, "office"),
        Destination(Kind.IVR, "main"),
    ]


def test_it_dumps_back_as_written(tmp_path: Path) -> None:
    """`ipbx apply` and the API speak the same schema: a dump loads to the same config."""
    config = load_config(write(tmp_path, ISSUE_SHAPE))
    dumped = config.model_dump(mode="json")
    assert dumped["smtp"]["from"] == "pbx@example.com"
    assert dumped["ivrs"][0]["options"] == {"1": "extension:1002", "2": "group:support"}
    assert dumped["schedules"][0]["holidays"] == ["2026-12-25"]
    assert dumped["extensions"][1]["forward"]["busy"] == "voicemail:1001"
    again = load_config(write(tmp_path, yaml.safe_dump(dumped)))
    assert again == config


def test_every_option(tmp_path: Path) -> None:
    greeting = tmp_path / "welcome.wav"
    greeting.write_bytes(b"RIFF")
    config = load_config(
        write(
            tmp_path,
            EXTENSIONS
            + "  - {number: '1002', password: secret1002, dnd: true, caller_id: '+15550100',\n"
            "     forward: {always: '+15557654321', unregistered: '1000',\n"
            "               no_answer: '0501234567'}}\n"
            "smtp: {host: mail.example.com, port: 587, from: pbx@example.com, username: pbx,\n"
            "       password: mailsecret, starttls: true}\n"
            "groups:\n"
            "  - {name: hunt, strategy: roundrobin, members: [1000, 1001]}\n"
            "ivrs:\n"
            f"  - {{name: main, greeting: 'file:{greeting}', direct_dial: true,\n"
            "     options: {1: 'ivr:main', '*': 'voicemail:1001', '#': hangup}}\n"
            "schedules:\n"
            "  - {name: night, timezone: America/New_York,\n"
            "     hours: {mon-fri: '09:00-12:00,13:00-18:00', 'sat,sun': 22:00-06:00},\n"
            "     holidays: [2026-12-25], open: 'group:hunt', closed: 'ivr:main',\n"
            "     holiday: 'announcement:closed'}\n"
            "announcements:\n"
            f"  - {{name: closed, file: {greeting}}}\n"
            "blacklist:\n"
            "  - {pattern: anonymous}\n"
            "  - {pattern: '+7495???????', extension: '1001', message: 'file:"
            + str(greeting)
            + "'}\n",
        )
    )
    carol = config.extensions[2]
    assert (carol.dnd, carol.caller_id) == (True, "+15550100")
    # Bare digits are an extension when one has that number, else an outside number.
    assert carol.forward.always == Destination(Kind.NUMBER, "+15557654321")
    assert carol.forward.unregistered == Destination(Kind.EXTENSION, "1000")
    assert carol.forward.no_answer == Destination(Kind.NUMBER, "0501234567")
    assert config.smtp is not None
    assert (config.smtp.username, config.smtp.password, config.smtp.starttls) == (
        "pbx",
        "mailsecret",
        True,
    )
    assert "mailsecret" not in repr(config.smtp)
    assert config.groups[0].members == ["1000", "1001"]
    assert config.groups[0].fallback == Destination(Kind.HANGUP)
    ivr = config.ivrs[0]
    assert ivr.greeting == Prompt(file=greeting)
    assert str(ivr.greeting) == f"file:{greeting}"
    assert set(ivr.options) == {"1", "*", "#"}
    assert config.schedules[0].holiday == Destination(Kind.ANNOUNCEMENT, "closed")
    assert config.announcements[0].prompt == Prompt(file=greeting)
    assert config.blacklist[1].message == Prompt(file=greeting)


def test_a_python_built_config_needs_no_file() -> None:
    config = Config.model_validate(
        {"smtp": {"host": "localhost", "from": "a@b.example"}, "groups": []}
    )
    assert config.smtp is not None and config.smtp.port == 25


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "numbers:\n  - {number: '+15550100', destination: 'extension:1005'}\n",
            "ipbx.yaml:5: numbers[0].destination: extension:1005: there is no extension 1005",
        ),
        (
            "numbers:\n  - {number: '+15550100', destination: 'group:sales'}\n",
            "ipbx.yaml:5: numbers[0].destination: group:sales: there is no group named sales",
        ),
        (
            "numbers:\n  - {number: '+15550100', destination: 'voicemail:1000'}\n",
            "ipbx.yaml:5: numbers[0].destination: voicemail:1000: extension 1000 has no voicemail",
        ),
        (
            "groups:\n  - {name: g, members: ['1000', '1003']}\n",
            "ipbx.yaml:5: groups[0].members[1]: there is no extension 1003",
        ),
        (
            "groups:\n  - {name: g, members: ['1000', '1000']}\n",
            "ipbx.yaml:5: groups[0].members[1]: 1000 is listed twice",
        ),
        (
            "groups:\n  - {name: g, members: []}\n",
            "ipbx.yaml:5: groups[0].members: List should have at least 1 item",
        ),
        (
            "groups:\n  - {name: g, strategy: circular, members: ['1000']}\n",
            "ipbx.yaml:5: groups[0].strategy",
        ),
        (
            "groups:\n  - {name: g, members: ['1000']}\n  - {name: g, members: ['1001']}\n",
            "ipbx.yaml:6: groups[1].name: name g is already used by groups[0]",
        ),
        (
            "groups:\n  - {name: g, members: ['1000'],\n     fallback: 'ivr:nowhere'}\n",
            "ipbx.yaml:6: groups[0].fallback: ivr:nowhere: there is no ivr named nowhere",
        ),
        (
            "ivrs:\n  - {name: m, greeting: hi,\n     options: {'1': 'announcement:x'}}\n",
            "ipbx.yaml:6: ivrs[0].options.1: announcement:x: there is no announcement named x",
        ),
        (
            "ivrs:\n  - {name: m, greeting: hi, options: {'12': hangup}}\n",
            "ipbx.yaml:5: ivrs[0].options.12",
        ),
        (
            "ivrs:\n  - {name: m, greeting: 'file:/no/such/prompt.wav'}\n",
            "ipbx.yaml:5: ivrs[0].greeting: prompt file '/no/such/prompt.wav' does not exist",
        ),
        (
            "ivrs:\n  - {name: m, greeting: ''}\n",
            "ipbx.yaml:5: ivrs[0].greeting: empty prompt",
        ),
        (
            "ivrs:\n  - {name: m, greeting: hi, timeout_destination: 'schedule:s'}\n",
            "ipbx.yaml:5: ivrs[0].timeout_destination: schedule:s: there is no schedule named s",
        ),
        (
            "announcements:\n  - {name: a}\n",
            "ipbx.yaml:5: announcements[0]: give either text or file",
        ),
        (
            "announcements:\n  - {name: a, file: /no/such.wav}\n",
            "ipbx.yaml:5: announcements[0]: prompt file '/no/such.wav' does not exist",
        ),
        (
            "schedules:\n  - {name: s, timezone: Mars/Olympus, open: hangup, closed: hangup}\n",
            "ipbx.yaml:5: schedules[0].timezone: 'Mars/Olympus': not an IANA time zone",
        ),
        (
            "schedules:\n  - {name: s, hours: {mon-frd: '09:00-18:00'}, open: hangup,\n"
            "     closed: hangup}\n",
            "ipbx.yaml:5: schedules[0].hours.mon-frd: 'mon-frd': expected days",
        ),
        (
            "schedules:\n  - {name: s, hours: {mon: '09:00-25:00'}, open: hangup,\n"
            "     closed: hangup}\n",
            "ipbx.yaml:5: schedules[0].hours.mon: '09:00-25:00': expected HH:MM-HH:MM",
        ),
        (
            "schedules:\n  - {name: s, hours: {mon: '09:00-09:00'}, open: hangup,\n"
            "     closed: hangup}\n",
            "schedules[0].hours.mon: '09:00-09:00': 09:00-09:00 is an empty range",
        ),
        (
            "schedules:\n  - {name: s, holidays: [2026-13-01], open: hangup, closed: hangup}\n",
            "ipbx.yaml:5: schedules[0].holidays[0]",
        ),
        (
            "schedules:\n  - {name: s, open: hangup}\n",
            "ipbx.yaml:5: schedules[0].closed: Field required",
        ),
        (
            "blacklist:\n  - {pattern: '+1555abc'}\n",
            "ipbx.yaml:5: blacklist[0].pattern: '+1555abc': expected a number with * (any digits)",
        ),
        (
            "blacklist:\n  - {pattern: '*'}\n",
            "ipbx.yaml:5: blacklist[0].pattern: '*': a pattern of only * would block every caller",
        ),
        (
            "blacklist:\n  - {pattern: '+1555*', extension: '1009'}\n",
            "ipbx.yaml:5: blacklist[0].extension: there is no extension 1009",
        ),
        (
            "smtp: {host: h, from: nobody}\n",
            "ipbx.yaml:4: smtp.from: String should match pattern",
        ),
        (
            "smtp: {host: h, from: a@b.example, username: u}\n",
            "ipbx.yaml:4: smtp: username and password go together",
        ),
    ],
)
def test_mistakes_name_the_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, EXTENSIONS + text)


@pytest.mark.parametrize(
    ("extension", "expected"),
    [
        ("voicemail: {pin: 12ab}", "extensions[0].voicemail.pin: String should match"),
        ("voicemail: {pin: '1234', email: bob}", "extensions[0].voicemail.email"),
        (
            "voicemail: {pin: '1234', email: bob@example.com}",
            "extensions[0].voicemail.email: voicemail to email needs the smtp settings",
        ),
        ("forward: {busy: 'voicemail:1000'}", "voicemail:1000: extension 1000 has no voicemail"),
        ("forward: {always: 'extension:1007'}", "extensions[0].forward.always: extension:1007"),
        ("forward: {no_answer: 'voicemale:1000'}", "unknown destination 'voicemale:1000'"),
        ("forward: {no_answer_seconds: 0}", "extensions[0].forward.no_answer_seconds"),
        ("forward: {sometimes: '1000'}", "extensions[0].forward.sometimes: unknown key"),
        ("caller_id: Bob", "extensions[0].caller_id: String should match"),
    ],
)
def test_extension_mistakes(tmp_path: Path, extension: str, expected: str) -> None:
    text = f"extensions:\n  - {{number: '1000', password: secret1000, {extension}}}\n"
    message = error_of(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'ipbx.yaml'}:2: "), message
    assert expected in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "extensions:\n"
            "  - {number: '1000', password: secret1000, forward: {always: '1001'}}\n"
            "  - {number: '1001', password: secret1001, forward: {busy: '1000'}}\n",
            "ipbx.yaml:3: extensions[1].forward.busy: extension:1000: loop "
            "extension:1000 -> extension:1001 -> extension:1000",
        ),
        (
            "extensions:\n"
            "  - {number: '1000', password: secret1000,\n"
            "     forward: {unregistered: 'extension:1000'}}\n",
            "ipbx.yaml:3: extensions[0].forward.unregistered: extension:1000: loop "
            "extension:1000 -> extension:1000",
        ),
        (
            "extensions:\n"
            "  - {number: '1000', password: secret1000, forward: {always: 'schedule:day'}}\n"
            "schedules:\n"
            "  - {name: day, open: 'schedule:night', closed: hangup}\n"
            "  - {name: night, open: hangup, closed: 'extension:1000'}\n",
            "loop extension:1000 -> schedule:day -> schedule:night -> extension:1000",
        ),
    ],
)
def test_loops_between_destinations_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(tmp_path, text)


def test_waiting_for_someone_is_not_a_loop(tmp_path: Path) -> None:
    """Forwarding on no answer, a group's fallback and a menu's time-out ring someone or
    wait for the caller first, so pointing them back where they came from is allowed."""
    load_config(
        write(
            tmp_path,
            "extensions:\n"
            "  - {number: '1000', password: secret1000, forward: {no_answer: 'group:g'}}\n"
            "  - {number: '1001', password: secret1001, forward: {no_answer: '1000'}}\n"
            "groups:\n"
            "  - {name: g, members: ['1001'], fallback: 'extension:1000'}\n"
            "ivrs:\n"
            "  - {name: m, greeting: hi, timeout_destination: 'ivr:m'}\n",
        )
    )
