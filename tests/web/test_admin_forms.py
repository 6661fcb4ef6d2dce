"""Every form of the web administration refuses what it must and then changes nothing:
bad input gets the field's error (or the page's alert, for a removal that cannot be),
a form without its session's CSRF token gets 403, a supervisor's change gets 403, and an
admin of another tenant gets 403 for this tenant's forms and for every page that reads
its calls, recordings, voicemail and configuration. "Nothing" is the configuration in
the store and in the running PBX, the API tokens, and the prompt and voicemail files.

One server for the module: every case leaves it as it found it (that is what each
asserts), and the users sign in once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ipbx.pbx.provisioning import KINDS
from ipbx.store import CallRecord
from tests.support.apiclient import Api
from tests.support.mailbox import leave_message, write_message_wav
from tests.web.conftest import ADMIN, csrf_of, serve_web, signed_in

# One item of each list, added through the pages before the cases run (in this order:
# a route needs its trunk, a number its group), and the form's field that each case
# spoils, with the spoiling value: some fail the item's model, some the whole
# configuration (a trunk or member that does not exist); "" for the page's alert.
SEEDS: dict[str, dict[str, str]] = {
    "extensions": {"number": "1001", "name": "Bob", "password": "secret1001"},
    "trunks": {"name": "carrier", "host": "- 127.0.0.1"},
    "outbound_routes": {"name": "intl", "pattern": "_00X.", "trunks": "- carrier"},
    "groups": {"name": "sales", "members": "- '1000'"},
    "numbers": {"number": "+15551230000", "destination": "group:sales"},
    "queues": {"name": "support", "agents": "- '1000'"},
    "conferences": {"name": "standup", "pin": "4321"},
    "ivrs": {"name": "main", "greeting": "Press 1 for sales", "options": "'1': group:sales"},
    "schedules": {"name": "office", "hours": "mon-fri: 09:00-17:00", "open": "group:sales",
                  "closed": "voicemail:1000"},
    "announcements": {"name": "closed", "text": "We are closed"},
    "blacklist": {"pattern": "+15550000000"},
    "webhooks": {"url": "https://crm.example.com/hook", "events": "- call.*",
                 "secret": "0123456789abcdef"},
}  # fmt: skip
NEW_KEYS = {
    "extensions": "1006", "trunks": "backup", "outbound_routes": "local",
    "groups": "support-team", "numbers": "+15551230001", "queues": "billing",
    "conferences": "board", "ivrs": "night", "schedules": "weekend", "announcements": "holiday",
    "blacklist": "+15550000001", "webhooks": "https://crm.example.com/other",
}  # fmt: skip
# A change to each seed that its form accepts.
CHANGED = {
    "extensions": {"name": "Robert"}, "trunks": {"max_channels": "10"},
    "outbound_routes": {"strip": "2"}, "groups": {"ring_seconds": "25"},
    "numbers": {"destination": "extension:1000"}, "queues": {"ring_seconds": "25"},
    "conferences": {"max_members": "10"}, "ivrs": {"retries": "4"},
    "schedules": {"timezone": "Europe/Kyiv"},
    "announcements": {"text": "We are closed today"}, "blacklist": {"message": "Goodbye"},
    "webhooks": {"timeout": "5"},
}  # fmt: skip
SPOILED: dict[str, tuple[str, dict[str, str]]] = {
    "extensions": ("password", {"password": "abc"}),
    "trunks": ("transport", {"transport": "pigeon"}),
    "outbound_routes": ("trunks", {"trunks": "- nowhere"}),
    "groups": ("members", {"members": "- '1999'"}),
    "numbers": ("destination", {"destination": "nowhere:1"}),
    "queues": ("ring_seconds", {"ring_seconds": "long"}),
    "conferences": ("pin", {"pin": "12a"}),
    "ivrs": ("options", {"options": "'1': [group"}),
    "schedules": ("timezone", {"timezone": "Mars/Olympus"}),
    # An empty field is left out: the file alone, which is not there. The model checks
    # it with the text (one of the two), so the error is the form's, not the field's.
    "announcements": ("", {"text": "", "file": "/nonexistent/closed.wav"}),
    "blacklist": ("message", {"message": "file:/nonexistent/busy.wav"}),
    "webhooks": ("timeout", {"timeout": "soon"}),
}
assert set(SEEDS) == set(KINDS) == set(NEW_KEYS) == set(CHANGED) == set(SPOILED)


@dataclass(frozen=True)
class Post:
    """A form as a browser sends it (without the CSRF token, which each case adds or not)."""

    path: str
    data: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes, str]] | None = None


@dataclass(frozen=True)
class Form:
    """A form that changes something: `right` is a change an admin may make; `bad` the
    same form with bad input, refused with status `refusal` and the element `error`."""

    right: Post
    bad: Post | None = None
    refusal: int = 422
    error: str = ""
    supervisors_too: bool = False  # signing out is no change of configuration


@dataclass
class Site:
    web: Api
    office: TestClient
    watcher: TestClient
    acme: TestClient
    message_id: str
    prompt: bytes

    def csrf(self, client: TestClient) -> str:
        return csrf_of(client.get("/admin/default/extensions").text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from open_site(tmp_path_factory.mktemp("web"))


def open_site(folder: Path) -> Iterator[Site]:
    """The pages with one item of each list, a voicemail message and a recorded call,
    and the three users signed in."""
    for web in serve_web(folder / "data"):
        office = web.client
        watcher, acme = TestClient(office.app), TestClient(office.app)
        for client, name in ((office, ADMIN), (watcher, "watcher"), (acme, "acme-admin")):
            assert signed_in(client, name)[0] == 200
        token = csrf_of(office.get("/admin/default/").text)
        for kind, seed in SEEDS.items():
            added = office.post(f"/admin/default/config/{kind}", data={**seed, "csrf": token})
            assert added.status_code == 200 and 'role="alert"' not in added.text, added.text
        box = web.pbx.mailboxes.get("1000")
        assert box is not None
        message = leave_message(box, "+15551234567", 4000)
        recordings = web.pbx.config.data_dir / "recordings"
        recordings.mkdir()
        write_message_wav(recordings / "rec1.wav", seconds=0.5)
        web.store.save_call_records(
            [CallRecord("rec1", "1000", "1001", 100.0, 130.0, "answered", 102.0,
                        recording="rec1.wav")]
        )  # fmt: skip
        prompt = write_message_wav(folder / "prompt.wav", seconds=0.2).read_bytes()
        yield Site(web, office, watcher, acme, message.id, prompt)


def forms(site: Site) -> dict[str, Form]:
    """Every form of the pages, by name."""
    found: dict[str, Form] = {}
    for kind, seed in SEEDS.items():
        key_field = KINDS[kind].key_field
        key, (spoiled, spoiling) = seed[key_field], SPOILED[kind]
        new = {**seed, key_field: NEW_KEYS[kind]}
        error = f'id="f-{spoiled}-error"' if spoiled else 'role="alert"'
        found[f"add to {kind}"] = Form(
            Post(f"/admin/default/config/{kind}", new),
            Post(f"/admin/default/config/{kind}", {**new, **spoiling}),
            error=error,
        )
        # A change keeps the key (its input is disabled), and a secret left empty.
        kept = {name: text for name, text in seed.items() if name != key_field}
        kept.update(CHANGED[kind])
        path = f"/admin/default/config/{kind}/{key}"
        found[f"change in {kind}"] = Form(
            Post(path, kept), Post(path, {**kept, **spoiling}), error=error
        )
        found[f"remove from {kind}"] = Form(
            Post(f"/admin/default/remove/{kind}", {"key": NEW_KEYS[kind]}),
            Post(f"/admin/default/remove/{kind}", {"key": "nothing-such"}),
            refusal=409,
            error='role="alert"',
        )
    found["remove in use"] = Form(
        Post("/admin/default/remove/outbound_routes", {"key": "intl"}),
        Post("/admin/default/remove/trunks", {"key": "carrier"}),  # the route's
        refusal=409,
        error="outbound_routes/intl.trunks[0]",
    )
    found["add an extension"] = Form(
        Post("/admin/default/extensions", {"number": "1007", "password": "secret1007"}),
        Post("/admin/default/extensions", {"number": "10a7", "password": "secret1007"}),
        error='id="number-error"',
    )
    found["change an extension"] = Form(
        Post("/admin/default/extensions/1001", {"name": "Robert"}),
        Post("/admin/default/extensions/1001", {"name": "Robert", "password": "abc"}),
        error='id="password-error"',
    )
    found["delete an extension"] = Form(
        Post("/admin/default/extensions/1001/delete"),
        Post("/admin/default/extensions/1000/delete"),
        refusal=409,
        error="extensions item 1000 is in the configuration file",
    )
    found["issue an API token"] = Form(
        Post("/admin/default/tokens", {"scope": "read", "name": "crm"}),
        Post("/admin/default/tokens", {"scope": "root", "name": "crm"}),
        error='id="scope-error"',
    )
    reader = site.web.reader.split("_")[1]
    found["revoke an API token"] = Form(
        Post("/admin/default/tokens/revoke", {"key_id": reader}),
        Post("/admin/default/tokens/revoke", {"key_id": "nothing"}),
        refusal=404,
        error='role="alert"',
    )
    upload = "/admin/default/announcements/upload"
    found["upload a prompt"] = Form(
        Post(upload, {"name": "closed"}, {"audio": ("closed.wav", site.prompt, "audio/wav")}),
        Post(upload, {"name": "closed"}, {"audio": ("closed.wav", b"RIFF junk", "audio/wav")}),
        error='id="u-audio-error"',
    )
    message = f"/admin/default/voicemail/1000/{site.message_id}/delete"
    found["delete a voicemail message"] = Form(
        Post(message), Post("/admin/default/voicemail/1000/nothing/delete"), refusal=404
    )
    found["sign out"] = Form(Post("/admin/default/sign-out"), supervisors_too=True)
    return found


FORMS = [
    *(f"{verb} {kind}" for kind in SEEDS for verb in ("add to", "change in", "remove from")),
    "remove in use",
    *(f"{verb} an extension" for verb in ("add", "change", "delete")),
    "issue an API token",
    "revoke an API token",
    "upload a prompt",
    "delete a voicemail message",
    "sign out",
]


def state(web: Api) -> tuple[Any, ...]:
    """What a refused form must leave as it was."""
    store, data = web.store, web.pbx.config.data_dir
    files = {
        str(path.relative_to(data)): path.read_bytes()
        for folder in ("prompts", "voicemail")
        for path in sorted((data / folder).rglob("*"))
        if path.is_file()
    }
    return (store.revision(), store.provisioned(), store.list_extensions(),
            store.api_tokens(), web.pbx.config, files)  # fmt: skip


def post(client: TestClient, form: Post, csrf: str | None) -> int:
    data = form.data if csrf is None else {**form.data, "csrf": csrf}
    return client.post(form.path, data=data, files=form.files, follow_redirects=False).status_code


@pytest.mark.parametrize("name", FORMS)
def test_a_form_refuses_bad_input_a_missing_token_a_supervisor_and_another_tenant(
    site: Site, name: str
) -> None:
    form = forms(site)[name]
    before = state(site.web)
    office = site.csrf(site.office)
    if form.bad is not None:
        data = {**form.bad.data, "csrf": office}
        refused = site.office.post(form.bad.path, data=data, files=form.bad.files)
        assert refused.status_code == form.refusal, refused.text
        assert form.error in refused.text
        assert state(site.web) == before
    assert post(site.office, form.right, None) == 403
    assert post(site.office, form.right, "forged") == 403
    if not form.supervisors_too:
        assert post(site.watcher, form.right, site.csrf(site.watcher)) == 403
    acme = csrf_of(site.acme.get("/admin/acme/").text)
    assert post(site.acme, form.right, acme) == 403
    assert state(site.web) == before


READS = [
    "", "live", "events", "calls", "calls/rec1/recording", "analytics", "queues",
    "queues/live", "voicemail", "voicemail/1000/{message}", "extensions", "extensions/1001",
    "tokens", *(f"config/{kind}" for kind in KINDS),
    *(f"config/{kind}/{seed[KINDS[kind].key_field]}" for kind, seed in SEEDS.items()),
]  # fmt: skip


@pytest.mark.parametrize("page", READS)
def test_another_tenants_admin_may_not_read_this_tenants_pages(site: Site, page: str) -> None:
    path = "/admin/default/" + page.format(message=site.message_id)
    assert site.acme.get(path).status_code == 403
    if page != "events":  # a stream that stays open
        assert site.office.get(path).status_code == 200


def test_each_of_those_forms_sent_right_by_an_admin_is_a_change(tmp_path: Path) -> None:
    """The changes the cases above send are real ones: taken in turn (an item is added,
    changed, then removed), the admin's are made."""
    for site in open_site(tmp_path):
        every = forms(site)
        for name in FORMS:
            before = state(site.web)
            status = post(site.office, every[name].right, site.csrf(site.office))
            assert status in (201, 303), name
            assert name == "sign out" or state(site.web) != before, name
