"""The REST surface: time, requestToken, revokeTokens, publish/history/presence, errors and CORS."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from starlette.testclient import TestClient

from authserver.core.capabilities import Capability
from authserver.core.tokenrequests import create_token_request
from authserver.sandbox import SandboxLimits, create_sandbox_app

from .conftest import KEY, OTHER_KEY, jwt_for
from helpers import FakeClock

FIXED_NOW = 1_800_000_000.0


def basic(key_text: str = f"{KEY.name}:{KEY.secret}") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(key_text.encode()).decode()}


def bearer(token: str, *, raw: bool = False) -> dict[str, str]:
    return {"Authorization": "Bearer " + (token if raw else base64.b64encode(token.encode()).decode())}


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_sandbox_app(
        [KEY, OTHER_KEY],
        clock=lambda: FIXED_NOW,
        limits=SandboxLimits(max_message_size=1024),
        key_capabilities={OTHER_KEY.name: Capability.parse('{"limited:*":["subscribe"]}')},
    )
    with TestClient(app) as test_client:
        yield test_client


def rel_links(header: str) -> dict[str, str]:
    """``Link`` header -> {rel: "messages?..."} (the relative form ably-js parses)."""
    return {rel: target.removeprefix("./") for target, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


def token(**kwargs: Any) -> str:
    return jwt_for(now=FIXED_NOW - 1, **kwargs)


def test_a_jwt_issued_in_the_sandboxs_future_is_40001_and_the_clock_offset_moves_the_sandbox() -> None:
    """Ably refuses an ``iat`` in its future with 40001/400 (ably/ably-js#1720); a sandbox whose clock is
    behind the issuer's (``clock_offset``) reproduces a skewed issuer."""
    app = create_sandbox_app([KEY], clock=lambda: FIXED_NOW)
    with TestClient(app) as test_client:
        app.state.sandbox.clock_offset = -30.0
        assert test_client.get("/time").json() == [int((FIXED_NOW - 30) * 1000)]
        skewed = jwt_for(now=FIXED_NOW)
        refused = test_client.get("/channels/a/messages", headers=bearer(skewed))
        assert (refused.status_code, refused.json()["error"]["code"]) == (400, 40001)
        back_dated = jwt_for(now=FIXED_NOW - 30)
        assert test_client.get("/channels/a/messages", headers=bearer(back_dated)).status_code == 200


def test_time_answers_the_sandbox_clock_in_ms(client: TestClient) -> None:
    assert client.get("/time").json() == [int(FIXED_NOW * 1000)]
    packed = client.get("/time", headers={"Accept": "application/x-msgpack"})
    assert packed.headers["content-type"] == "application/x-msgpack"
    assert msgpack.unpackb(packed.content) == [int(FIXED_NOW * 1000)]


class TestRequestToken:
    def request(self, **kwargs: Any) -> dict[str, Any]:
        return create_token_request(
            KEY, capability='{"*":["*"]}', client_id="user-1", ttl_ms=60_000, now_ms=int(FIXED_NOW * 1000), **kwargs
        ).to_dict()

    def test_json_token_request_returns_token_details(self, client: TestClient) -> None:
        response = client.post(f"/keys/{KEY.name}/requestToken", json=self.request())
        assert response.status_code == 200
        details = response.json()
        assert details["clientId"] == "user-1"
        assert details["expires"] - details["issued"] == 60_000
        assert details["capability"] == '{"*":["*"]}'
        # the issued token works for REST
        assert client.get("/channels/a/messages", headers=bearer(details["token"])).status_code == 200

    def test_msgpack_token_request_is_answered_in_msgpack(self, client: TestClient) -> None:
        response = client.post(
            f"/keys/{KEY.name}/requestToken",
            content=msgpack.packb(self.request()),
            headers={"Content-Type": "application/x-msgpack", "Accept": "application/x-msgpack"},
        )
        assert response.status_code == 200
        assert msgpack.unpackb(response.content)["keyName"] == KEY.name

    def test_replayed_request_fails_with_ably_error_body_and_headers(self, client: TestClient) -> None:
        body = self.request()
        client.post(f"/keys/{KEY.name}/requestToken", json=body)
        response = client.post(f"/keys/{KEY.name}/requestToken", json=body)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-ably-errorcode"] == "40105"
        assert response.headers["x-ably-errormessage"] == "Nonce value replayed"
        assert response.json()["error"] == {
            "message": "Nonce value replayed",
            "code": 40105,
            "statusCode": 401,
            "href": "https://help.ably.io/error/40105",
        }

    def test_unsigned_request_is_accepted_with_basic_auth(self, client: TestClient) -> None:
        body = {"keyName": KEY.name, "timestamp": int(FIXED_NOW * 1000), "nonce": "n" * 16, "clientId": "x"}
        assert client.post(f"/keys/{KEY.name}/requestToken", json=body).status_code == 401
        response = client.post(f"/keys/{KEY.name}/requestToken", json=body, headers=basic())
        assert response.status_code == 200


class TestChannels:
    def test_publish_then_history_newest_first_with_paging(self, client: TestClient) -> None:
        headers = bearer(token(client_id="alice"))
        for i in range(3):
            assert (
                client.post(
                    "/channels/room:rest/messages", json={"name": "n", "data": f"m{i}"}, headers=headers
                ).status_code
                == 201
            )
        first = client.get("/channels/room:rest/messages?limit=2", headers=headers)
        assert [m["data"] for m in first.json()] == ["m2", "m1"]
        assert all(m["clientId"] == "alice" for m in first.json())
        links = rel_links(first.headers["link"])
        assert set(links) == {"first", "current", "next"}
        rest = client.get("/channels/room:rest/" + links["next"], headers=headers)
        assert [m["data"] for m in rest.json()] == ["m0"]
        assert set(rel_links(rest.headers["link"])) == {"first", "current"}  # no next: the last page
        again = client.get("/channels/room:rest/" + rel_links(rest.headers["link"])["first"], headers=headers)
        assert [m["data"] for m in again.json()] == ["m2", "m1"]

    def test_history_start_and_end_select_a_time_window(self) -> None:
        """RSL2b1: start and end (ms, inclusive) bound the messages' timestamps."""
        clock = FakeClock(FIXED_NOW)
        with TestClient(create_sandbox_app([KEY], clock=clock)) as timed:
            for i in range(4):
                timed.post("/channels/times/messages", json={"data": f"t{i}"}, headers=basic())
                clock.advance(1)
            start, end = int(FIXED_NOW * 1000) + 1000, int(FIXED_NOW * 1000) + 2000
            window = timed.get(f"/channels/times/messages?start={start}&end={end}", headers=basic())
            after = timed.get(f"/channels/times/messages?start={start + 1}&direction=forwards", headers=basic())
            assert [m["data"] for m in window.json()] == ["t2", "t1"]
            assert [m["data"] for m in after.json()] == ["t2", "t3"]
            assert f"start={start}" in rel_links(window.headers["link"])["current"]
            bad = timed.get(f"/channels/times/messages?start={end}&end={start}", headers=basic())
            assert (bad.status_code, bad.json()["error"]["code"]) == (400, 40003)

    def test_from_serial_limits_history_to_what_was_published_up_to_it(self, client: TestClient) -> None:
        """untilAttach: ably-js sends the attach serial as fromSerial (RTL10b)."""
        client.post("/channels/until/messages", json={"data": "before"}, headers=basic())
        channel = client.app.state.sandbox.channels.get("until")  # type: ignore[attr-defined]
        attach_serial = channel.serial
        client.post("/channels/until/messages", json={"data": "after"}, headers=basic())
        response = client.get(f"/channels/until/messages?fromSerial={attach_serial}", headers=basic())
        assert [m["data"] for m in response.json()] == ["before"]

    def test_history_forwards(self, client: TestClient) -> None:
        headers = basic()
        client.post("/channels/fw/messages", json=[{"data": "a"}, {"data": "b"}], headers=headers)
        assert [m["data"] for m in client.get("/channels/fw/messages?direction=forwards", headers=headers).json()] == [
            "a",
            "b",
        ]

    def test_binary_data_is_base64_for_json_and_bytes_for_msgpack(self, client: TestClient) -> None:
        headers = {**basic(), "Content-Type": "application/x-msgpack"}
        client.post("/channels/bin/messages", content=msgpack.packb({"data": b"\x00\x01"}), headers=headers)
        as_json = client.get("/channels/bin/messages", headers=basic()).json()[0]
        assert (as_json["data"], as_json["encoding"]) == ("AAE=", "base64")
        packed = client.get("/channels/bin/messages", headers={**basic(), "Accept": "application/x-msgpack"})
        assert msgpack.unpackb(packed.content)[0]["data"] == b"\x00\x01"

    def test_raw_bearer_token_is_accepted_too(self, client: TestClient) -> None:
        assert client.get("/channels/a/messages", headers=bearer(token(), raw=True)).status_code == 200

    def test_publish_without_capability_is_refused_40160(self, client: TestClient) -> None:
        headers = bearer(token(capability='{"room:*":["subscribe"]}'))
        response = client.post("/channels/room:1/messages", json={"data": "x"}, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (401, 40160)

    def test_history_without_history_capability_is_refused_40160(self, client: TestClient) -> None:
        response = client.get("/channels/room:1/messages", headers=bearer(token(capability='{"*":["publish"]}')))
        assert response.json()["error"]["code"] == 40160

    def test_message_clientid_other_than_the_tokens_is_refused_40012(self, client: TestClient) -> None:
        headers = bearer(token(client_id="alice"))
        response = client.post("/channels/c/messages", json={"data": "x", "clientId": "mallory"}, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (400, 40012)

    def test_oversized_message_is_refused_40009(self, client: TestClient) -> None:
        response = client.post("/channels/c/messages", json={"data": "x" * 2000}, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (413, 40009)

    def test_key_capability_limits_basic_auth(self, client: TestClient) -> None:
        headers = basic(f"{OTHER_KEY.name}:{OTHER_KEY.secret}")
        response = client.post("/channels/limited:1/messages", json={"data": "x"}, headers=headers)
        assert response.json()["error"]["code"] == 40160

    def test_presence_of_an_empty_channel_is_an_empty_list(self, client: TestClient) -> None:
        assert client.get("/channels/nobody/presence", headers=basic()).json() == []


class TestAuthErrors:
    @pytest.mark.parametrize(
        ("headers", "code"),
        [
            ({}, 40101),
            (basic(f"{KEY.name}:wrong"), 40101),
            (bearer(jwt_for(now=FIXED_NOW - 100, lifetime=10)), 40142),
            (bearer("not-a-token"), 40101),
            (bearer("invalid-token", raw=True), 40101),
            (bearer(jwt_for(now=FIXED_NOW - 1, key=OTHER_KEY).rsplit(".", 1)[0] + ".forged"), 40101),
        ],
        ids=["no credentials", "wrong key secret", "expired token", "not a token", "raw not a token", "bad signature"],
    )
    def test_rest_requests_are_judged_like_realtime(
        self, client: TestClient, headers: dict[str, str], code: int
    ) -> None:
        response = client.get("/channels/a/messages", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
        assert response.headers["x-ably-errorcode"] == str(code)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/nothing/here"),
            ("POST", "/nothing/here"),
            ("GET", f"/keys/{KEY.name}/requestToken"),
            ("DELETE", "/channels/a/messages"),
            ("PUT", "/time"),
        ],
    )
    def test_unknown_paths_whatever_the_method_are_404_40400(self, client: TestClient, method: str, path: str) -> None:
        """Ably answers a method a path does not take like an unknown path (ably-spec 8.5), not 405."""
        response = client.request(method, path, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (404, 40400)


class TestRevokeTokens:
    def test_revocation_refuses_older_tokens_of_the_target(self, client: TestClient) -> None:
        old = token(client_id="victim")
        response = client.post(f"/keys/{KEY.name}/revokeTokens", json={"targets": ["clientId:victim"]}, headers=basic())
        assert response.status_code == 200
        body = response.json()
        assert (body["successCount"], body["failureCount"]) == (1, 0)
        assert body["results"][0]["target"] == "clientId:victim"
        refused = client.get("/channels/a/messages", headers=bearer(old))
        assert refused.json()["error"]["code"] == 40141
        assert client.get("/channels/a/messages", headers=bearer(token(client_id="bystander"))).status_code == 200

    def test_unsupported_targets_are_reported_per_target(self, client: TestClient) -> None:
        body = {"targets": ["channel:x", "revocationKey:g"]}
        response = client.post(f"/keys/{KEY.name}/revokeTokens", json=body, headers=basic()).json()
        assert (response["successCount"], response["failureCount"]) == (1, 1)
        assert response["results"][0]["error"]["code"] == 40000

    def test_revocation_needs_basic_auth_40162(self, client: TestClient) -> None:
        response = client.post(
            f"/keys/{KEY.name}/revokeTokens", json={"targets": ["clientId:x"]}, headers=bearer(token())
        )
        assert response.json()["error"]["code"] == 40162

    def test_a_key_without_revocable_tokens_answers_40121(self) -> None:
        app = create_sandbox_app([KEY, OTHER_KEY], clock=lambda: FIXED_NOW, non_revocable_keys=[OTHER_KEY.name])
        with TestClient(app) as test_client:
            other = basic(f"{OTHER_KEY.name}:{OTHER_KEY.secret}")
            body = {"targets": ["clientId:x"]}
            response = test_client.post(f"/keys/{OTHER_KEY.name}/revokeTokens", json=body, headers=other)
            assert (response.status_code, response.json()["error"]["code"]) == (400, 40121)
            # and its tokens may live up to 24 h, as Ably allows tokens of keys without revocation
            long_lived = jwt_for(now=FIXED_NOW - 1, key=OTHER_KEY, lifetime=7200)
            assert test_client.get("/channels/a/messages", headers=bearer(long_lived)).status_code == 200
            revocable = jwt_for(now=FIXED_NOW - 1, key=KEY, lifetime=7200)
            refused = test_client.get("/channels/a/messages", headers=bearer(revocable))
            assert (refused.status_code, refused.json()["error"]["code"]) == (400, 40003)

    def test_a_token_issued_after_the_revocation_works(self, client: TestClient) -> None:
        body = {"targets": ["revocationKey:s-1"], "issuedBefore": int(FIXED_NOW * 1000) - 5000}
        assert client.post(f"/keys/{KEY.name}/revokeTokens", json=body, headers=basic()).status_code == 200
        before = jwt_for(now=FIXED_NOW - 6, extra={"x-ably-revocation-key": "s-1"})
        after = jwt_for(now=FIXED_NOW - 5, extra={"x-ably-revocation-key": "s-1"})
        assert client.get("/channels/a/messages", headers=bearer(before)).json()["error"]["code"] == 40141
        assert client.get("/channels/a/messages", headers=bearer(after)).status_code == 200

    @pytest.mark.parametrize(
        ("offset_ms", "status"),
        [(-3_600_001, 400), (-3_600_000, 200), (-1, 200), (0, 200), (120_000, 400), (2**63, 400)],
        ids=["over an hour ago", "an hour ago", "just now", "now", "in the future", "far beyond"],
    )
    def test_issued_before_in_the_future_or_over_an_hour_ago_is_40003_as_ably_refuses_it(
        self, client: TestClient, offset_ms: int, status: int
    ) -> None:
        """Ably: "Requests with an issuedBefore in the future, or more than an hour in the past, will be
        rejected" (TokenRevocationOptions); the sandbox is no kinder."""
        body = {"targets": ["clientId:x"], "issuedBefore": int(FIXED_NOW * 1000) + offset_ms}
        response = client.post(f"/keys/{KEY.name}/revokeTokens", json=body, headers=basic())
        assert response.status_code == status, response.text
        if status == 400:
            error = response.json()["error"]
            assert error["code"] == 40003 and "hour" in error["message"]

    def test_revocation_with_another_key_than_the_urls_is_40133(self, client: TestClient) -> None:
        """Ably: "can only revoke tokens using the same key that issued them" (40133, ably-spec 8.3)."""
        other = basic(f"{OTHER_KEY.name}:{OTHER_KEY.secret}")
        response = client.post(f"/keys/{KEY.name}/revokeTokens", json={"targets": ["clientId:x"]}, headers=other)
        assert (response.status_code, response.json()["error"]["code"]) == (401, 40133)


def test_cors_preflight_allows_the_ably_headers(client: TestClient) -> None:
    response = client.options(
        "/channels/room/messages",
        headers={
            "Origin": "http://localhost:5173",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-ably-version, ably-agent, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-ably-version" in response.headers["access-control-allow-headers"].lower()


def test_cors_responses_expose_the_error_headers(client: TestClient) -> None:
    response = client.get("/channels/a/messages", headers={"Origin": "http://localhost:5173"})
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "x-ably-errorcode" in exposed and "link" in exposed


class TestClientMistakesAreNever500:
    """Whatever a client puts in a query, header or body, the answer is an Ably 4xx error."""

    @pytest.mark.parametrize(
        ("path", "code"),
        [
            ("/channels/c/messages?cursor=--5", 40003),
            ("/channels/c/messages?cursor=%C2%B2", 40003),
            ("/channels/c/messages?limit=%C2%B2", 40003),
            ("/channels/c/presence?limit=%C2%B2", 40003),
            ("/channels/c/messages?limit=" + "9" * 5000, 40003),
            ("/channels/c/messages?cursor=" + "9" * 5000, 40003),
        ],
        ids=["double minus", "superscript cursor", "superscript limit", "superscript presence limit", "huge", "huge-c"],
    )
    def test_paging_parameters_must_be_short_ascii_integers_40003(
        self, client: TestClient, path: str, code: int
    ) -> None:
        response = client.get(path, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (400, code)

    @pytest.mark.parametrize("field", ["timestamp", "ttl"])
    def test_token_request_numbers_must_be_ascii_digits_40000(self, client: TestClient, field: str) -> None:
        body = {"keyName": KEY.name, "timestamp": int(FIXED_NOW * 1000), "nonce": "n" * 16, field: "²"}
        response = client.post(f"/keys/{KEY.name}/requestToken", json=body, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (400, 40000)

    def test_a_body_nested_too_deep_to_parse_is_40000(self, client: TestClient) -> None:
        body = "[" * 100_000 + "]" * 100_000
        response = client.post("/channels/c/messages", content=body, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (400, 40000)

    def test_a_jwt_whose_claims_are_not_ascii_is_40144(self, client: TestClient) -> None:
        header = token().split(".")[0]
        response = client.get("/channels/c/messages", headers=bearer(f"{header}.é.abc"))
        assert (response.status_code, response.json()["error"]["code"]) == (401, 40144)

    @pytest.mark.parametrize(
        "body",
        [
            b'{"data": NaN}',
            b'{"data": 1e999}',
            b'{"data": 100000000000000000000000}',
            b'{"data": "x", "extras": [1]}',
            ('{"data": ' + "[" * 100 + "]" * 100 + "}").encode(),
            b'{"name": 7}',
        ],
        ids=["NaN", "Infinity", "int beyond 64 bits", "extras not an object", "nested 100 deep", "name not a string"],
    )
    def test_payloads_that_cannot_be_relayed_in_both_formats_are_refused_40000(
        self, client: TestClient, body: bytes
    ) -> None:
        response = client.post("/channels/poison/messages", content=body, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (400, 40000)
        assert client.get("/channels/poison/messages", headers=basic()).json() == []

    def test_more_than_max_messages_per_publish_is_40009(self, client: TestClient) -> None:
        response = client.post("/channels/many/messages", json=[{}] * 1001, headers=basic())
        assert (response.status_code, response.json()["error"]["code"]) == (413, 40009)


def test_an_unexpected_error_is_an_ably_500_logged_once_by_type(caplog: pytest.LogCaptureFixture) -> None:
    app = create_sandbox_app([KEY])

    async def broken(request: Any) -> Any:
        raise KeyError("secret-looking-detail")

    app.add_route("/broken", broken)
    with TestClient(app) as test_client, caplog.at_level("INFO"):
        response = test_client.get("/broken", headers={"Origin": "http://localhost:5173"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == 50000
    assert response.headers["x-ably-errorcode"] == "50000"
    assert response.headers["access-control-allow-origin"] == "http://localhost:5173"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == ["unexpected KeyError on GET /broken"]
    assert errors[0].exc_info is None
    assert "secret-looking-detail" not in caplog.text


class TestRevocationBounds:
    def test_a_full_revocation_table_fails_that_target_only(self) -> None:
        app = create_sandbox_app([KEY], clock=lambda: FIXED_NOW, limits=SandboxLimits(max_revocations=1))
        with TestClient(app) as test_client:
            body = {"targets": ["clientId:a", "clientId:b"]}
            response = test_client.post(f"/keys/{KEY.name}/revokeTokens", json=body, headers=basic())
        assert response.status_code == 200
        results = response.json()["results"]
        assert "error" not in results[0]
        assert (results[1]["target"], results[1]["error"]["code"]) == ("clientId:b", 42910)

    def test_revocations_are_forgotten_once_every_token_they_cover_has_expired(self) -> None:
        clock = FakeClock(FIXED_NOW)
        limits = SandboxLimits(max_revocations=1, max_token_ttl_ms=60_000)
        app = create_sandbox_app([KEY], clock=clock, limits=limits)
        with TestClient(app) as test_client:
            first = test_client.post(
                f"/keys/{KEY.name}/revokeTokens", json={"targets": ["clientId:a"]}, headers=basic()
            )
            assert first.json()["successCount"] == 1
            clock.advance(61)
            later = test_client.post(
                f"/keys/{KEY.name}/revokeTokens", json={"targets": ["clientId:b"]}, headers=basic()
            )
        assert (later.json()["successCount"], later.json()["failureCount"]) == (1, 0)


def test_stats_is_an_empty_well_formed_page_for_any_credential(client: TestClient) -> None:
    """RSC6: the sandbox keeps no statistics; ably-js's REST JWT tests call stats() to prove a JWT works."""
    for headers in (basic(), bearer(token())):
        response = client.get("/stats?unit=hour&limit=10", headers=headers)
        assert (response.status_code, response.json()) == (200, [])
        assert set(rel_links(response.headers["link"])) == {"first", "current"}
    assert client.get("/stats").json()["error"]["code"] == 40101
    assert client.get("/stats", headers=bearer("invalid-token", raw=True)).json()["error"]["code"] == 40101
    assert client.get("/stats?unit=week", headers=basic()).json()["error"]["code"] == 40003
