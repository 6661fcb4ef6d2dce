"""The web administration as an office manager uses it: sign in, add an extension in
the page, see a bad value refused next to its field, sign out; and what it refuses: a
form without its CSRF token, a supervisor's change, another tenant's pages, a password
guessed too often."""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi.testclient import TestClient

from ipbx.store import CallRecord, LegRecord
from ipbx.web.accounts import ADDRESS_FAILURES, MAX_ADDRESSES, MAX_FAILURES, sign_in
from tests.support.apiclient import Api
from tests.support.mailbox import leave_message, write_message_wav
from tests.support.queues import FakeQueueDesk
from tests.web.conftest import PASSWORD, csrf_of, signed_in


def test_an_admin_adds_an_extension_and_a_bad_one_is_refused_next_to_its_field(web: Api) -> None:
    client = web.client
    form = client.get("/")
    cookie = form.headers["set-cookie"]  # the sign-in form's double-submit token
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert "Secure" in client.get("https://testserver/").headers["set-cookie"]  # over TLS
    status, dashboard = signed_in(client, "office")
    assert status == 200 and "Dashboard" in dashboard and "Calls now" in dashboard
    session = client.cookies.get("ipbx_session")
    assert session is not None
    page = client.get("/admin/default/extensions")
    assert "1000" in page.text
    token = csrf_of(page.text)

    added = client.post(
        "/admin/default/extensions",
        data={"number": "1005", "name": "Eve", "password": "secret1005", "csrf": token},
    )
    assert added.status_code == 200 and "Eve" in added.text
    assert web.store.get_extension("1005") is not None
    assert web.pbx.directory.get("1005") is not None  # what REGISTER looks up

    revision = web.store.revision()
    taken = client.post(
        "/admin/default/extensions",
        data={"number": "1005", "name": "Mallory", "password": "secret1005", "csrf": token},
    )
    assert taken.status_code == 422
    assert 'id="number-error">extensions item 1005 exists' in taken.text
    bad = client.post(
        "/admin/default/extensions",
        data={"number": "10a6", "name": "Bad", "password": "secret1006", "csrf": token},
    )
    assert bad.status_code == 422 and 'id="number-error"' in bad.text
    no_password = client.post(
        "/admin/default/extensions", data={"number": "1006", "name": "Nopass", "csrf": token}
    )
    assert 'id="password-error">extension 1006 is new and needs one' in no_password.text
    assert web.store.revision() == revision and web.store.get_extension("1006") is None

    renamed = client.post("/admin/default/extensions/1005", data={"name": "Eve B", "csrf": token})
    assert renamed.status_code == 200 and "Eve B" in renamed.text

    without_csrf = client.post("/admin/default/extensions/1005/delete")
    assert without_csrf.status_code == 403 and web.store.get_extension("1005") is not None
    removed = client.post("/admin/default/extensions/1005/delete", data={"csrf": token})
    assert removed.status_code == 200 and web.store.get_extension("1005") is None

    signed_out = client.post("/admin/default/sign-out", data={"csrf": token})
    assert signed_out.status_code == 200 and 'action="/"' in signed_out.text
    client.cookies.set("ipbx_session", session)
    again = client.get("/admin/default/extensions", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/"


def test_supervisors_read_other_tenants_are_refused_and_guessing_locks_out(web: Api) -> None:
    client = web.client
    signed_in(client, "watcher")
    page = client.get("/admin/default/extensions")
    assert page.status_code == 200 and "Alice" in page.text and "Add an extension" not in page.text
    write = client.post(
        "/admin/default/extensions",
        data={"number": "1007", "name": "X", "password": "secret1007", "csrf": csrf_of(page.text)},
    )
    assert write.status_code == 403 and web.store.get_extension("1007") is None

    signed_in(client, "acme-admin")
    assert client.get("/admin/acme/").status_code == 200
    assert client.get("/admin/default/extensions").status_code == 403
    assert client.get("/admin/default/").status_code == 403

    for _ in range(MAX_FAILURES - 1):
        assert signed_in(client, "office", "wrong")[0] == 401
    status, text = signed_in(client, "office", "wrong")
    assert status == 429 and "Locked" in text
    assert signed_in(client, "office")[0] == 429  # even the right password, while locked
    assert web.store.admin_user("office").locked_until is not None  # type: ignore[union-attr]

    stale = client.post("/", data={"name": "watcher", "password": PASSWORD, "csrf": "forged"})
    assert stale.status_code == 403


def test_a_lock_out_holds_where_the_guessing_was_and_an_address_guesses_only_so_often(
    web: Api,
) -> None:
    def browser(address: str) -> TestClient:
        return TestClient(web.client.app, client=(address, 40000))

    guesser, office = browser("192.0.2.66"), browser("198.51.100.10")
    for _ in range(MAX_FAILURES):
        status, _ = signed_in(guesser, "office", "wrong")
    assert status == 429
    assert signed_in(guesser, "office")[0] == 429  # even the right password, from there
    # Knowing the name is not enough to lock its user out from the office.
    assert signed_in(office, "office")[0] == 200
    assert signed_in(guesser, "office")[0] == 429  # the lock stays where it was

    # One address guessing across names is refused at the limit, whatever the name.
    scanner = browser("203.0.113.9")
    for n in range(ADDRESS_FAILURES):
        assert signed_in(scanner, f"user{n}", "wrong")[0] == 401
    status, text = signed_in(scanner, "watcher")
    assert status == 429 and "from your address" in text
    assert signed_in(office, "watcher")[0] == 200

    # Spread over many addresses, the guessing locks its user out from everywhere.
    for n in range(MAX_ADDRESSES):
        assert sign_in(web.store, "acme-admin", "wrong", f"198.18.0.{n}").user is None
    assert sign_in(web.store, "acme-admin", PASSWORD, "198.51.100.10").locked


def test_every_configuration_list_has_a_page_checked_with_the_whole_configuration(
    web: Api,
) -> None:
    client = web.client
    signed_in(client, "office")
    page = client.get("/admin/default/config/groups")
    assert page.status_code == 200 and 'name="members"' in page.text  # a YAML list
    token = csrf_of(page.text)

    def add(**fields: str) -> str:
        answer = client.post("/admin/default/config/groups", data={**fields, "csrf": token})
        return answer.text

    revision = web.store.revision()
    unknown = add(name="sales", members="- '1000'\n- '1009'")
    assert 'id="f-members-error">members[1]: ' in unknown and "1009" in unknown
    not_yaml = add(name="sales", members="[1000")
    assert 'id="f-members-error">not YAML' in not_yaml
    assert web.store.revision() == revision and web.pbx.config.groups == []

    client.post(
        "/admin/default/extensions",
        data={"number": "1005", "name": "Eve", "password": "secret1005", "csrf": token},
    )
    add(name="sales", members="- '1005'", ring_seconds="15")
    edit = client.get("/admin/default/config/groups/sales")
    assert edit.status_code == 200 and "- &#39;1005&#39;" in edit.text
    changed = client.post(
        "/admin/default/config/groups/sales",
        data={"members": "- '1005'\n- '1000'", "ring_seconds": "20", "csrf": token},
    )
    assert changed.status_code == 200 and web.pbx.config.groups[0].ring_seconds == 20
    in_use = client.post("/admin/default/remove/extensions", data={"key": "1005", "csrf": token})
    assert in_use.status_code == 409 and "groups/sales.members[0]" in in_use.text
    gone = client.post("/admin/default/remove/groups", data={"key": "sales", "csrf": token})
    assert gone.status_code == 200 and web.pbx.config.groups == []


def test_the_call_history_shows_mos_per_leg_and_plays_the_recording_to_its_tenant_only(
    web: Api,
) -> None:
    folder = web.pbx.config.data_dir / "recordings" / "2026-12-04"
    folder.mkdir(parents=True)
    wav = write_message_wav(folder / "rec1.wav", seconds=0.5)
    leg = LegRecord("caller", "127.0.0.1:4000", "PCMU", 1500, 3, 2.0, None, 4.31)
    web.store.save_call_records(
        [
            CallRecord("rec1", "1000", "1005", 100.0, 130.0, "answered", 102.0,
                       legs=(leg,), recording="2026-12-04/rec1.wav", person_answered=102.0),
            CallRecord("miss", "1001", "1000", 200.0, 210.0, "no_answer", None),
        ]
    )  # fmt: skip
    client = web.client
    signed_in(client, "watcher")  # a supervisor reads the history
    every = client.get("/admin/default/calls")
    assert every.status_code == 200 and "2 call(s)" in every.text and "MOS 4.31" in every.text
    assert 'src="/admin/default/calls/rec1/recording"' in every.text
    missed = client.get("/admin/default/calls", params={"result": "no_answer", "number": "1001"})
    assert "1 call(s)" in missed.text and "no answer" in missed.text
    played = client.get("/admin/default/calls/rec1/recording")
    assert played.status_code == 200 and played.content == wav.read_bytes()
    by_extension = client.get("/admin/default/analytics", params={"by": "extension"})
    assert by_extension.status_code == 200 and "<dt>Calls</dt><dd>2</dd>" in by_extension.text
    assert "<td>1005</td><td>1</td><td>1</td><td>0</td>" in by_extension.text
    assert client.get("/admin/default/analytics", params={"by": "nonsense"}).status_code == 422

    signed_in(client, "acme-admin")
    assert client.get("/admin/default/calls").status_code == 403
    assert client.get("/admin/default/calls/rec1/recording").status_code == 403
    assert client.get("/admin/default/analytics").status_code == 403
    assert "0 call(s)" in client.get("/admin/acme/calls").text


def test_another_tenants_admin_manages_its_webhooks_and_tokens(web: Api) -> None:
    client = web.client
    signed_in(client, "acme-admin")
    hooks = client.get("/admin/acme/config/webhooks")
    assert ">Webhooks<" in hooks.text and ">Trunks<" not in hooks.text  # routing: default's
    token = csrf_of(hooks.text)
    listed = client.post(
        "/admin/acme/config/webhooks",
        data={"url": "https://crm.example.com/hook", "events": "- call.*",
              "secret": "0123456789abcdef", "csrf": token},
    )  # fmt: skip
    (link,) = re.findall(r'href="(/admin/acme/config/webhooks/[^"]+)"', listed.text)
    assert "0123456789abcdef" not in client.get(link).text  # a secret is never shown
    client.post(link, data={"events": "- call.ended", "csrf": token})  # secret left empty
    (hook,) = web.pbx.config.webhooks
    assert (hook.tenant, hook.events, hook.secret) == ("acme", ["call.ended"], "0123456789abcdef")
    group = {"name": "x", "members": "- '1000'", "csrf": token}
    assert client.post("/admin/acme/config/groups", data=group).status_code == 403

    page = client.get("/admin/acme/tokens")
    token = csrf_of(page.text)
    bad = client.post("/admin/acme/tokens", data={"scope": "root", "csrf": token})
    assert bad.status_code == 422 and 'id="scope-error"' in bad.text
    issued = client.post("/admin/acme/tokens", data={"scope": "read", "name": "crm", "csrf": token})
    text = re.search(r'<code class="token">([^<]+)</code>', issued.text)
    assert issued.status_code == 201 and text is not None
    assert client.get("/extensions", headers=web.headers(text[1])).status_code == 200
    key_id = text[1].split("_")[1]
    assert text[1] not in client.get("/admin/acme/tokens").text  # shown once
    revoked = client.post("/admin/acme/tokens/revoke", data={"key_id": key_id, "csrf": token})
    assert revoked.status_code == 200 and key_id not in revoked.text
    assert client.get("/extensions", headers=web.headers(text[1])).status_code == 401


def test_the_queue_wallboard_shows_waiting_callers_agents_and_service_level(web: Api) -> None:
    web.pbx.queues = FakeQueueDesk(time.time())  # type: ignore[assignment]
    client = web.client
    signed_in(client, "watcher")
    board = client.get("/admin/default/queues")
    assert board.status_code == 200 and 'data-types="queue.joined' in board.text
    live = client.get("/admin/default/queues/live").text
    assert "sales: 2 waiting, service level 75 %" in live and "Carol +15550109" in live
    assert "<td>1001</td><td>in call</td>" in live and "(callback)" in live
    signed_in(client, "acme-admin")
    assert client.get("/admin/default/queues").status_code == 403
    assert "No queues." in client.get("/admin/acme/queues/live").text


def test_voicemail_plays_in_the_page_and_an_admin_deletes_a_message(web: Api) -> None:
    box = web.pbx.mailboxes.get("1000")
    assert box is not None
    message = leave_message(box, "+15551234567", 4000)
    client = web.client
    signed_in(client, "office")
    listed = client.get("/admin/default/voicemail")
    assert "Mailbox 1000 (1)" in listed.text and "+15551234567" in listed.text
    played = client.get(f"/admin/default/voicemail/1000/{message.id}")
    assert played.status_code == 200 and played.content == message.path.read_bytes()
    path = f"/admin/default/voicemail/1000/{message.id}/delete"
    assert client.post(path).status_code == 403  # no CSRF token
    deleted = client.post(path, data={"csrf": csrf_of(listed.text)})
    assert deleted.status_code == 200 and "Mailbox 1000 (0)" in deleted.text
    assert box.messages("new") == []


def test_an_announcement_plays_an_uploaded_recording_and_a_bad_file_is_refused(
    web: Api, tmp_path: Path
) -> None:
    client = web.client
    signed_in(client, "office")
    page = client.get("/admin/default/config/announcements")
    token = csrf_of(page.text)
    wav = write_message_wav(tmp_path / "closed.wav", seconds=0.5)

    def upload(name: str, content: bytes) -> str:
        answer = client.post(
            "/admin/default/announcements/upload",
            data={"name": name, "csrf": token},
            files={"audio": ("closed.wav", content, "audio/wav")},
        )
        return answer.text

    assert 'id="u-audio-error">not a WAV file' in upload("closed", b"RIFF nonsense")
    assert 'id="u-name-error"' in upload("Bad Name!", wav.read_bytes())
    assert web.pbx.config.announcements == []
    assert not (web.pbx.config.data_dir / "prompts" / "closed.wav").exists()
    assert "closed" in upload("closed", wav.read_bytes())
    (announcement,) = web.pbx.config.announcements
    assert announcement.file is not None and announcement.file.read_bytes() == wav.read_bytes()
