"""Text messages through the API: POST /messages sends from an extension (stored, here
pending: no phone of the extension is registered), GET /messages lists them by tenant
and extension; bad input is a 422 naming the field."""

from __future__ import annotations

from tests.support.apiclient import Api

RUSSIAN = "Привет"


def test_a_message_sent_through_the_api_is_listed_with_its_status(api: Api) -> None:
    admin, reader = api.headers(), api.headers(api.reader)
    sent = api.client.post(
        "/messages", json={"from": "1000", "to": "1001", "text": RUSSIAN}, headers=admin
    )
    assert sent.status_code == 202
    message = sent.json()
    assert (message["from"], message["to"], message["text"]) == ("1000", "1001", RUSSIAN)
    assert (message["direction"], message["status"]) == ("internal", "pending")

    listed = api.client.get("/messages", params={"extension": "1001"}, headers=reader).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == message["id"]
    assert (
        api.client.get("/messages", params={"extension": "1002"}, headers=reader).json()["total"]
        == 0
    )
    other = api.headers(api.other_tenant)
    assert api.client.get("/messages", headers=other).json()["total"] == 0

    def refused(body: dict[str, str], token: dict[str, str] = admin) -> tuple[int, str]:
        answer = api.client.post("/messages", json=body, headers=token)
        return answer.status_code, str(answer.json()["detail"])

    assert refused({"from": "1999", "to": "1001", "text": "hi"}) == (422, "from: no extension 1999")
    status, detail = refused({"from": "1000", "to": "+12125551234", "text": "hi"})
    assert status == 422 and detail.startswith("to:")
    assert refused({"from": "1000", "to": "1001", "text": ""})[0] == 422
    assert refused({"from": "1000", "to": "1001", "text": "x" * 70_000})[0] == 422
    assert refused({"from": "1000", "to": "1001", "text": "hi"}, reader)[0] == 403
    assert refused({"from": "1000", "to": "1001", "text": "hi"}, other)[0] == 422
