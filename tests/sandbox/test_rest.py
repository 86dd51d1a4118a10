"""The REST surface: time, requestToken, revokeTokens, publish/history/presence, errors and CORS."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from starlette.testclient import TestClient

from authserver.capabilities import Capability
from authserver.sandbox import SandboxLimits, create_sandbox_app
from authserver.tokenrequests import create_token_request

from .conftest import KEY, OTHER_KEY, jwt_for

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


def token(**kwargs: Any) -> str:
    return jwt_for(now=FIXED_NOW - 1, **kwargs)


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
        link = first.headers["link"]
        assert link.startswith("<./messages?") and link.endswith('>; rel="next"')
        rest = client.get("/channels/room:rest/" + link[3 : link.index(">")], headers=headers)
        assert [m["data"] for m in rest.json()] == ["m0"]
        assert "link" not in rest.headers

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
            (bearer("not-a-token"), 40144),
        ],
        ids=["no credentials", "wrong key secret", "expired token", "garbage token"],
    )
    def test_rest_requests_are_judged_like_realtime(
        self, client: TestClient, headers: dict[str, str], code: int
    ) -> None:
        response = client.get("/channels/a/messages", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
        assert response.headers["x-ably-errorcode"] == str(code)

    def test_unknown_route_is_an_ably_error(self, client: TestClient) -> None:
        response = client.get("/nothing/here")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 40400


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

    def test_revocation_needs_the_key_in_the_url(self, client: TestClient) -> None:
        other = basic(f"{OTHER_KEY.name}:{OTHER_KEY.secret}")
        response = client.post(f"/keys/{KEY.name}/revokeTokens", json={"targets": ["clientId:x"]}, headers=other)
        assert response.json()["error"]["code"] == 40101


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
