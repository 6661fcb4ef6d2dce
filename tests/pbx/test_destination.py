"""Destinations (routing is data, docs/architecture.md) parse to a kind and a target."""

import pytest

from ipbx.pbx.destination import Destination, DestinationError, Kind


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("extension:1001", Kind.EXTENSION, "1001"),
        ("group:sales", Kind.GROUP, "sales"),
        ("ivr:main", Kind.IVR, "main"),
        ("queue:support", Kind.QUEUE, "support"),
        ("voicemail:1001", Kind.VOICEMAIL, "1001"),
        ("conference:800", Kind.CONFERENCE, "800"),
        ("schedule:office-hours", Kind.SCHEDULE, "office-hours"),
        ("number:+15551234567", Kind.NUMBER, "+15551234567"),
        ("announcement:closed", Kind.ANNOUNCEMENT, "closed"),
        ("webhook:https://crm.example/flow?x=1", Kind.WEBHOOK, "https://crm.example/flow?x=1"),
        ("hangup", Kind.HANGUP, ""),
        (" Extension : 1001 ", Kind.EXTENSION, "1001"),
    ],
)
def test_every_kind_of_design_md_parses_and_prints_back(text: str, kind: Kind, target: str) -> None:
    destination = Destination.parse(text)
    assert (destination.kind, destination.target) == (kind, target)
    assert Destination.parse(str(destination)) == destination


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "unknown destination"),
        ("phone:1001", "unknown destination 'phone:1001'"),
        ("extension:", "extension needs a target"),
        ("extension:bob", "expected an extension number"),
        ("number:+0123", "expected an E.164 number"),
        ("queue:sup port", "expected a queue name"),
        ("webhook:ftp://x/y", "expected an http:// or https:// URL"),
        ("hangup:now", "hangup takes no target"),
    ],
)
def test_mistakes_say_what_was_expected(text: str, message: str) -> None:
    with pytest.raises(DestinationError, match=message):
        Destination.parse(text)
