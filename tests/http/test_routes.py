"""The HTTP contract of the token service: /auth in every form, login, logout, sessions, errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from authserver.core.callers import Identity
from authserver.core.tokenrequests import compute_mac
from authserver.http.app import create_app
from authserver.http.common import request_cookies
from authserver.http.web import WEB_DIR
from authserver.identity import Credentials
from authserver.identity.passwords import Passwords
from authserver.infra.guards import ConcurrencyGate, LoginThrottle, MemoryThrottle

from conftest import Blocking, Service, ServiceFactory, SettingsFactory
from helpers import KEY_NAME, KEY_SECRET

NO_CACHE = {
    "cache-control": "private, no-cache, no-store, must-revalidate",
    "pragma": "no-cache",
    "expires": "0",
}
USER_CAPABILITY = {
    "announcements": ["history", "subscribe"],
    "chat:*": ["history", "presence", "publish", "subscribe"],
    "private:alice": ["*"],
}


def verify(token: str) -> dict[str, Any]:
    """Decode and verify a JWT the way a relying party would (independent of our signer)."""
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "HS256", "kid": KEY_NAME, "typ": "JWT"}
    claims: dict[str, Any] = jwt.decode(
        token,
        KEY_SECRET,
        algorithms=["HS256"],
        options={"require": ["iat", "exp"], "verify_exp": False, "verify_iat": False},
    )
    return claims


def assert_no_cache(headers: Any) -> None:
    for name, value in NO_CACHE.items():
        assert headers[name] == value


def assert_ably_error(response: Any, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-ably-errorcode"] == str(code)
    assert response.headers["x-ably-errormessage"]
    assert_no_cache(response.headers)
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["statusCode"] == status and error["message"]
    return error


@pytest.fixture
def alice(service: Service) -> Service:
    service.add_user("alice")
    service.login("alice")
    return service


# --- /auth: the default response is TokenDetails wrapping a JWT --------------------------------


def test_auth_returns_token_details_wrapping_a_verified_jwt(alice: Service) -> None:
    response = alice.client.get("/auth")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert_no_cache(response.headers)
    details = response.json()
    assert set(details) == {"token", "keyName", "issued", "expires", "capability", "clientId"}
    claims = verify(details["token"])
    now = int(alice.clock())
    assert claims == {
        "iat": now,
        "exp": now + 3600,
        "x-ably-capability": json.dumps(USER_CAPABILITY, separators=(",", ":")),
        "x-ably-clientId": "alice",
    }
    assert details["keyName"] == KEY_NAME
    assert details["issued"] == now * 1000 and details["expires"] == (now + 3600) * 1000
    assert details["capability"] == claims["x-ably-capability"]
    assert details["clientId"] == "alice"


def test_auth_ignores_unknown_params_like_the_browser_cache_buster(alice: Service) -> None:
    response = alice.client.get("/auth", params={"rnd": "0.123", "app": "demo", "fromurl": "1"})
    assert response.status_code == 200
    assert verify(response.json()["token"])["x-ably-clientId"] == "alice"


@pytest.mark.parametrize("name", ["clientId", "client_id"])
def test_auth_accepts_the_callers_own_client_id_in_either_spelling(alice: Service, name: str) -> None:
    response = alice.client.get("/auth", params={name: "alice"})
    assert response.status_code == 200


def test_auth_post_form_encoded_as_ably_clients_send_it(alice: Service) -> None:
    response = alice.client.post(
        "/auth", data={"clientId": "alice", "ttl": "120000", "capability": '{"chat:room":["publish"]}'}
    )
    assert response.status_code == 200
    claims = verify(response.json()["token"])
    assert claims["exp"] - claims["iat"] == 120
    assert claims["x-ably-capability"] == '{"chat:room":["publish"]}'


def test_auth_post_json_body(alice: Service) -> None:
    response = alice.client.post("/auth", json={"client_id": "alice", "capability": {"chat:x": ["subscribe"]}})
    assert response.status_code == 200
    assert verify(response.json()["token"])["x-ably-capability"] == '{"chat:x":["subscribe"]}'


def test_auth_post_merges_the_url_query_with_the_body(alice: Service) -> None:
    response = alice.client.post("/auth?fromurl=1&ttl=90000", data={"app": "demo"})
    assert response.status_code == 200
    claims = verify(response.json()["token"])
    assert claims["exp"] - claims["iat"] == 90


@pytest.mark.parametrize(
    "accept", ["application/jwt", "application/jwt, application/json;q=0.5", "text/plain;q=0.2, application/jwt"]
)
def test_auth_answers_a_raw_jwt_when_accept_prefers_it(alice: Service, accept: str) -> None:
    response = alice.client.get("/auth", headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/jwt"
    assert_no_cache(response.headers)
    assert verify(response.text)["x-ably-clientId"] == "alice"


@pytest.mark.parametrize(
    "accept", ["*/*", "application/json, text/plain", "application/json, application/jwt;q=0.9", ""]
)
def test_auth_answers_token_details_for_every_other_accept(alice: Service, accept: str) -> None:
    response = alice.client.get("/auth", headers={"accept": accept})
    assert response.headers["content-type"] == "application/json"
    assert "issued" in response.json()


def test_auth_format_jwt_param(alice: Service) -> None:
    response = alice.client.get("/auth", params={"format": "jwt"})
    assert response.headers["content-type"] == "application/jwt"
    verify(response.text)


def test_auth_format_details_param_wins_over_an_accept_header_for_jwt(alice: Service) -> None:
    response = alice.client.get("/auth", params={"format": "details"}, headers={"accept": "application/jwt"})
    assert response.headers["content-type"] == "application/json"
    assert verify(response.json()["token"])["x-ably-clientId"] == "alice"


def test_auth_format_tokenrequest_is_signed_with_the_exact_mac(alice: Service) -> None:
    response = alice.client.get("/auth", params={"format": "tokenrequest", "ttl": "600000"})
    assert response.status_code == 200
    assert_no_cache(response.headers)
    request = response.json()
    assert set(request) == {"keyName", "ttl", "capability", "clientId", "timestamp", "nonce", "mac"}
    assert request["keyName"] == KEY_NAME and request["clientId"] == "alice" and request["ttl"] == 600000
    assert request["timestamp"] == int(alice.clock() * 1000)
    assert len(request["nonce"]) >= 16
    expected = compute_mac(
        key_name=request["keyName"],
        ttl=request["ttl"],
        capability=request["capability"],
        client_id=request["clientId"],
        timestamp=request["timestamp"],
        nonce=request["nonce"],
        secret=KEY_SECRET,
    )
    assert request["mac"] == expected
    assert alice.client.get("/auth", params={"format": "tokenrequest"}).json()["nonce"] != request["nonce"]


# --- capability: requested ∩ policy ∩ key -------------------------------------------------------


def test_requested_capability_is_narrowed_to_the_policy(alice: Service) -> None:
    asked = {"chat:lobby": ["publish", "push-admin"], "announcements": ["*"], "secret": ["subscribe"]}
    response = alice.client.get("/auth", params={"capability": json.dumps(asked)})
    granted = json.loads(verify(response.json()["token"])["x-ably-capability"])
    assert granted == {"announcements": ["history", "subscribe"], "chat:lobby": ["publish"]}


def test_capability_is_also_limited_by_the_keys_capability(make_service: ServiceFactory) -> None:
    svc = make_service(ABLY_KEY_CAPABILITY='{"chat:*":["subscribe"],"private:*":["publish"]}')
    svc.add_user("alice")
    svc.login("alice")
    granted = json.loads(verify(svc.client.get("/auth").json()["token"])["x-ably-capability"])
    assert granted == {"chat:*": ["subscribe"], "private:alice": ["publish"]}


def test_capability_never_allowed_is_a_final_refusal(alice: Service) -> None:
    response = alice.client.get("/auth", params={"capability": '{"admin:*":["publish"]}'})
    assert_ably_error(response, 403, 40160)


def test_role_with_nothing_in_common_with_the_key_is_refused(make_service: ServiceFactory) -> None:
    svc = make_service(ABLY_KEY_CAPABILITY='{"billing":["publish"]}')
    svc.add_user("alice")
    svc.login("alice")
    assert_ably_error(svc.client.get("/auth"), 403, 40160)


def test_admin_role_gets_everything_the_key_allows(service: Service) -> None:
    service.add_user("root", role="admin")
    service.login("root")
    claims = verify(service.client.get("/auth").json()["token"])
    assert claims["x-ably-capability"] == '{"*":["*"]}'
    assert claims["exp"] - claims["iat"] == 3600


# --- TTL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "ttl_param", "expected"),
    [
        ({}, None, 3600),  # TOKEN_TTL default
        ({"TOKEN_TTL": "5"}, None, 5),  # the operator's short TTL is honoured (end-to-end tests)
        ({}, "600000", 600),
        ({}, "1000", 60),  # a client may not ask for a refresh storm: floor 60 s
        ({"TOKEN_TTL": "5"}, "1000", 5),  # ...but the floor never exceeds the operator's own TTL
        ({}, "86400000", 3600),  # clamped to the role's max_ttl
        ({"TOKEN_TTL": "30", "TOKEN_MAX_TTL": "60"}, "3600000", 60),  # and to TOKEN_MAX_TTL
    ],
)
def test_ttl_is_the_request_clamped_to_role_and_service_limits(
    make_service: ServiceFactory, env: dict[str, str], ttl_param: str | None, expected: int
) -> None:
    svc = make_service(**env)
    svc.add_user("alice")
    svc.login("alice")
    params = {} if ttl_param is None else {"ttl": ttl_param}
    claims = verify(svc.client.get("/auth", params=params).json()["token"])
    assert claims["exp"] - claims["iat"] == expected


# --- refusals: the client contract (401 retry, 403 stop, 400 malformed) ---------------------------


def test_auth_without_a_session_is_401_so_clients_retry(service: Service) -> None:
    error = assert_ably_error(service.client.get("/auth"), 401, 40101)
    assert "not logged in" in error["message"]


@pytest.mark.parametrize("cookie", ["garbage", "a.b", "x" * 500, "eyJhbGciOiJIUzI1NiJ9.e30.sig"])
def test_auth_with_a_forged_session_cookie_is_401(service: Service, cookie: str) -> None:
    service.client.cookies.set("authserver_session", cookie)
    assert_ably_error(service.client.get("/auth"), 401, 40101)


@pytest.mark.parametrize("client_id", ["bob", "*", "alice2", "ALICE"])
def test_asking_for_another_client_id_is_a_final_refusal(alice: Service, client_id: str) -> None:
    assert_ably_error(alice.client.get("/auth", params={"clientId": client_id}), 403, 40102)


def test_disabled_account_is_refused_with_403_even_with_a_live_session(alice: Service) -> None:
    alice.users.set_disabled("alice", True)
    assert_ably_error(alice.client.get("/auth"), 403, 40300)


def test_removed_account_is_a_final_refusal_that_says_so(alice: Service) -> None:
    alice.users.remove("alice")
    body = assert_ably_error(alice.client.get("/auth"), 403, 40303)
    assert body["message"] == "your account was removed"


def test_role_change_applies_to_the_next_token(alice: Service) -> None:
    alice.users.set_role("alice", "admin")
    assert verify(alice.client.get("/auth").json()["token"])["x-ably-capability"] == '{"*":["*"]}'


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ("ttl=abc", 40003, "ttl"),
        ("ttl=-5", 40003, "ttl"),
        ("ttl=0", 40003, "ttl"),
        ("ttl=1.5", 40003, "ttl"),
        ("ttl=99999999999999999999", 40003, "ttl"),
        ("ttl=1&ttl=2", 40000, "repeated"),
        ("clientId=alice&clientId=alice", 40000, "repeated"),
        ("clientId=alice&client_id=bob", 40000, "disagree"),
        ("clientId=", 40012, "empty"),
        ("capability=%7Bnot%20json", 40000, "JSON"),
        ("capability=%7B%27*%27%3A%20%5B%27*%27%5D%7D", 40000, "JSON"),  # ably-python's repr of a dict
        ("capability=%7B%22chat%22%3A%5B%22fly%22%5D%7D", 40000, "fly"),
        ("capability=%7B%22chat%22%3A%5B%5D%7D", 40000, "chat"),
        ("capability=%5B%5D", 40000, "capability"),
        ("format=xml", 40000, "format"),
    ],
)
def test_malformed_params_are_400_with_a_clear_message(alice: Service, query: str, code: int, fragment: str) -> None:
    error = assert_ably_error(alice.client.get(f"/auth?{query}"), 400, code)
    assert fragment.lower() in error["message"].lower()


@pytest.mark.parametrize(
    ("content_type", "body", "fragment"),
    [
        ("application/json", b"{not json", "JSON"),
        ("application/json", b"[1,2]", "object"),
        ("text/xml", b"<a/>", "Content-Type"),
        ("multipart/form-data; boundary=x", b"--x--", "Content-Type"),
        ("application/json", b"[" * 15000, "JSON"),
        ("application/json", b'{"capability": "\\ud800"}', "capability"),
        ("application/x-www-form-urlencoded", b"ttl=\xff\xfe", "UTF-8"),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=1" % i for i in range(101)), "fields"),
    ],
)
def test_malformed_post_bodies_are_400(alice: Service, content_type: str, body: bytes, fragment: str) -> None:
    response = alice.client.post("/auth", content=body, headers={"content-type": content_type})
    error = assert_ably_error(response, 400, 40000)
    assert fragment.lower() in error["message"].lower()


def test_unknown_route_and_method_get_ably_error_bodies(service: Service) -> None:
    assert_ably_error(service.client.get("/nope"), 404, 40400)
    assert_ably_error(service.client.put("/auth"), 405, 40500)


# --- login, logout, session -----------------------------------------------------------------------


def test_logging_out_in_one_tab_stops_the_ably_clients_of_the_others_for_good(alice: Service) -> None:
    # The tabs of one browser share its cookies: after a logout in one, the others' ably-js asks /auth
    # with what the logout left, and must get the final answer (403 stops it), not a 401 to retry on.
    assert alice.client.post("/logout").status_code == 200
    body = assert_ably_error(alice.client.get("/auth"), 403, 40304)
    assert body["message"] == "you were logged out in another window"
    # the page of this browser reloaded: simply logged out, nothing to explain
    assert alice.client.get("/session").json() == {"loggedIn": False, "demoLogin": False}
    # and logging in again works as ever
    alice.login("alice")
    assert alice.client.get("/auth").status_code == 200


def test_login_sets_a_strict_http_only_session_cookie(service: Service) -> None:
    service.add_user("alice")
    response = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert response.status_code == 200
    assert response.json() == {"clientId": "alice", "role": "user"}
    cookie = response.headers["set-cookie"]
    assert "authserver_session=" in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the HTTPS test
    assert_no_cache(response.headers)


def test_login_cookie_is_secure_over_https(make_service: ServiceFactory) -> None:
    svc = make_service()
    svc.add_user("alice")
    svc.client.base_url = "https://testserver"
    response = svc.client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert "Secure" in response.headers["set-cookie"]


def test_login_accepts_a_form(service: Service) -> None:
    service.add_user("alice")
    response = service.client.post("/login", data={"username": "alice", "password": "correct horse"})
    assert response.status_code == 200


def test_login_with_a_custom_client_id_issues_tokens_for_that_client_id(service: Service) -> None:
    service.add_user("alice", client_id="alice-42")
    service.login("alice")
    assert verify(service.client.get("/auth").json()["token"])["x-ably-clientId"] == "alice-42"


def test_wrong_password_and_unknown_user_get_the_same_401(service: Service) -> None:
    service.add_user("alice")
    wrong = service.client.post("/login", json={"username": "alice", "password": "nope"})
    unknown = service.client.post("/login", json={"username": "mallory", "password": "nope"})
    assert assert_ably_error(wrong, 401, 40101) == assert_ably_error(unknown, 401, 40101)
    assert "set-cookie" not in wrong.headers


def test_disabled_account_cannot_log_in(service: Service) -> None:
    service.add_user("alice")
    service.users.set_disabled("alice", True)
    response = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert_ably_error(response, 403, 40300)


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "alice"}, {"password": "x"}, {"username": "", "password": "x"}, {"username": 1, "password": "x"}],
)
def test_login_with_missing_fields_is_400(service: Service, body: dict[str, Any]) -> None:
    assert_ably_error(service.client.post("/login", json=body), 400, 40000)


def test_login_with_an_unsupported_body_is_400(service: Service) -> None:
    response = service.client.post("/login", content=b"alice:pw", headers={"content-type": "text/plain"})
    assert_ably_error(response, 400, 40000)


@pytest.mark.parametrize("path", ["/login", "/logout"])
@pytest.mark.parametrize(
    "headers", [{"origin": "https://evil.example"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"}]
)
def test_cross_origin_login_and_logout_are_refused(service: Service, path: str, headers: dict[str, str]) -> None:
    service.add_user("alice")
    response = service.client.post(path, json={"username": "alice", "password": "correct horse"}, headers=headers)
    assert_ably_error(response, 403, 40300)


def test_same_origin_and_configured_origins_may_log_in(make_service: ServiceFactory) -> None:
    svc = make_service(AUTHSERVER_ALLOWED_ORIGINS="https://app.example.com")
    svc.add_user("alice")
    for origin in ("http://testserver", "https://app.example.com"):
        response = svc.client.post(
            "/login", json={"username": "alice", "password": "correct horse"}, headers={"origin": origin}
        )
        assert response.status_code == 200, origin


def test_session_endpoint_reports_the_identity_and_where_it_came_from(alice: Service) -> None:
    response = alice.client.get("/session")
    assert response.status_code == 200
    assert_no_cache(response.headers)
    assert response.json() == {
        "loggedIn": True,
        "clientId": "alice",
        "role": "user",
        "source": "account",
        "demoLogin": False,
    }


def test_session_endpoint_names_a_demo_identity_and_says_demo_login_is_on(make_service: ServiceFactory) -> None:
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true")
    assert svc.client.get("/session").json() == {"loggedIn": False, "demoLogin": True}
    svc.login("visitor", "anything")
    body = svc.client.get("/session").json()
    assert (body["loggedIn"], body["clientId"], body["source"], body["demoLogin"]) == (True, "visitor", "demo", True)


def test_session_endpoint_answers_a_logged_out_page_with_200_not_an_error(service: Service) -> None:
    # A fresh page load asks /session before anyone logged in: that is not a failure (no red 401 in
    # the browser console). /auth keeps its 401, which is what tells Ably clients to retry later.
    response = service.client.get("/session")
    assert response.status_code == 200
    assert_no_cache(response.headers)
    assert response.json() == {"loggedIn": False, "demoLogin": False}
    assert_ably_error(service.client.get("/auth"), 401, 40101)


def test_session_endpoint_says_why_a_session_the_browser_still_holds_has_ended(alice: Service) -> None:
    cookie = alice.client.cookies["authserver_session"]
    assert alice.client.post("/logout").status_code == 200
    alice.client.cookies.clear()  # another device, holding a copy of the cookie
    alice.client.cookies.set("authserver_session", cookie)
    body = alice.client.get("/session").json()
    assert body["loggedIn"] is False
    assert body["ended"] == {"code": 40304, "message": "you were logged out in another window"}


def test_a_session_ended_by_log_out_everywhere_says_so_on_auth_and_session(alice: Service) -> None:
    """The other device's page still holds its cookie: /auth refuses it for good (403, so ably-js stops
    instead of retrying) with a code of its own, and /session gives the same reason."""
    other_device = alice.client.cookies["authserver_session"]
    alice.client.cookies.clear()
    alice.login("alice")  # a second device
    assert alice.client.post("/logout?everywhere=true").status_code == 200
    alice.client.cookies.clear()  # the other device's browser
    alice.client.cookies.set("authserver_session", other_device)
    body = assert_ably_error(alice.client.get("/auth"), 403, 40301)
    assert body["message"] == "you were logged out from another device"
    assert alice.client.get("/session").json()["ended"] == {
        "code": 40301,
        "message": "you were logged out from another device",
    }


def test_session_endpoint_reports_a_disabled_account_as_logged_out_with_40300(alice: Service) -> None:
    alice.users.set_disabled("alice", True)
    response = alice.client.get("/session")
    assert response.status_code == 200
    assert response.json()["ended"] == {"code": 40300, "message": "account is disabled"}
    assert_ably_error(alice.client.get("/auth"), 403, 40300)


@pytest.mark.parametrize(
    ("channel", "operations"),
    [
        ("chat:lobby", ["history", "presence", "publish", "subscribe"]),
        ("announcements", ["history", "subscribe"]),
        ("chat", []),  # "chat:*" needs a segment after "chat:"
        ("news", []),
        ("private:bob", []),
    ],
)
def test_session_endpoint_tells_the_page_what_its_capability_allows_on_a_channel(
    alice: Service, channel: str, operations: list[str]
) -> None:
    body = alice.client.get("/session", params={"channel": channel}).json()
    assert body["channel"] == {"name": channel, "operations": operations, "all": False}


def test_session_endpoint_expands_all_operations_and_says_so(alice: Service) -> None:
    ops = alice.client.get("/session", params={"channel": "private:alice"}).json()["channel"]
    assert ops["all"] is True
    assert {"publish", "subscribe", "presence", "history", "push-admin"} <= set(ops["operations"])


@pytest.mark.parametrize(
    ("channel", "operations"),
    [
        ("chat:lobby", ["subscribe"]),
        ("[meta]channel.lifecycle", ["subscribe"]),  # "[*]*" covers qualified resources too (spec 3.2)
        ("[?rewind=1]chat:lobby", ["subscribe"]),
    ],
)
def test_the_service_decides_what_star_bracket_star_allows_not_the_page(
    make_service: ServiceFactory, tmp_path: Path, channel: str, operations: list[str]
) -> None:
    # The old page had a JavaScript matcher of its own that said "[*]*" never covers a name starting
    # with "["; authserver.capabilities says it covers everything. The page now asks the service.
    policy = tmp_path / "policy.json"
    watcher = {"capability": {"[*]*": ["subscribe"]}}
    policy.write_text(json.dumps({"default_role": "watcher", "roles": {"watcher": watcher}}))
    svc = make_service(AUTHSERVER_POLICY=str(policy))
    svc.add_user("alice")
    svc.login("alice")
    assert svc.client.get("/session", params={"channel": channel}).json()["channel"]["operations"] == operations


def test_session_endpoint_refuses_an_absurdly_long_channel_name_as_a_client_mistake(alice: Service) -> None:
    assert_ably_error(alice.client.get("/session", params={"channel": "c" * 2049}), 400, 40000)


def test_session_endpoint_without_a_session_ignores_the_channel(service: Service) -> None:
    assert service.client.get("/session", params={"channel": "chat:x"}).json() == {
        "loggedIn": False,
        "demoLogin": False,
    }


def test_logout_ends_the_session_on_the_server_too(alice: Service) -> None:
    cookie = alice.client.cookies["authserver_session"]
    response = alice.client.post("/logout")
    assert response.status_code == 200
    assert response.headers["set-cookie"].startswith("authserver_session=logged-out;")
    assert "HttpOnly" in response.headers["set-cookie"] and "SameSite=strict" in response.headers["set-cookie"]
    # a copy of the old cookie is dead as well, for good: the server remembers only that it was logged out
    alice.client.cookies.clear()
    alice.client.cookies.set("authserver_session", cookie)
    assert_ably_error(alice.client.get("/auth"), 403, 40304)


def test_session_expires_after_its_ttl(make_service: ServiceFactory) -> None:
    svc = make_service(AUTHSERVER_SESSION_TTL="600")
    svc.add_user("alice")
    svc.login("alice")
    svc.clock.advance(599)
    assert svc.client.get("/auth").status_code == 200
    svc.clock.advance(1)
    error = assert_ably_error(svc.client.get("/auth"), 401, 40101)
    assert "expired" in error["message"]


# --- demo login ---------------------------------------------------------------------------------


def test_demo_login_lets_any_safe_name_in_with_the_demo_role(make_service: ServiceFactory) -> None:
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true")
    response = svc.client.post("/login", json={"username": "visitor", "password": "anything"})
    assert response.json() == {"clientId": "visitor", "role": "demo"}
    assert verify(svc.client.get("/auth").json()["token"])["x-ably-clientId"] == "visitor"


@pytest.mark.parametrize("name", ["*", "a:b", "[meta]x", "x{y}", "a b"])
def test_demo_login_rejects_unsafe_names(make_service: ServiceFactory, name: str) -> None:
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true")
    assert_ably_error(svc.client.post("/login", json={"username": name, "password": "x"}), 400, 40012)


def test_demo_login_never_logs_in_as_an_existing_account_without_its_password(make_service: ServiceFactory) -> None:
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true")
    svc.add_user("alice")
    svc.add_user("bob", client_id="robert")
    assert_ably_error(svc.client.post("/login", json={"username": "alice", "password": "guess"}), 401, 40101)
    # a free username whose clientId is an account's clientId would impersonate that account
    assert_ably_error(svc.client.post("/login", json={"username": "robert", "password": "guess"}), 401, 40101)
    assert svc.client.post("/login", json={"username": "alice", "password": "correct horse"}).json()["role"] == "user"


def test_demo_login_says_that_a_name_belongs_to_an_account(make_service: ServiceFactory) -> None:
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true")
    svc.add_user("alice")
    svc.add_user("bob", client_id="robert")
    error = assert_ably_error(svc.client.post("/login", json={"username": "alice", "password": "guess"}), 401, 40101)
    assert "registered account" in error["message"] and "demo login" in error["message"]
    error = assert_ably_error(svc.client.post("/login", json={"username": "robert", "password": "x"}), 401, 40101)
    assert error["message"].startswith("'robert' belongs to a registered account")


def test_a_wrong_password_for_an_account_still_counts_as_a_failed_login_in_demo_mode(
    make_service: ServiceFactory,
) -> None:
    # It is a guess at a real account's password: demo mode must not make guessing free.
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true")
    svc.add_user("alice")
    for _ in range(10):
        svc.client.post("/login", json={"username": "alice", "password": "guess"})
    assert_ably_error(svc.client.post("/login", json={"username": "alice", "password": "correct horse"}), 429, 42910)


def test_without_demo_login_a_wrong_password_gets_the_uniform_message(service: Service) -> None:
    service.add_user("alice")
    error = assert_ably_error(service.client.post("/login", json={"username": "alice", "password": "x"}), 401, 40101)
    assert error["message"] == "invalid username or password"


def test_demo_login_is_off_in_production_by_default(service: Service) -> None:
    response = service.client.post("/login", json={"username": "visitor", "password": "anything"})
    assert_ably_error(response, 401, 40101)


# --- operations -----------------------------------------------------------------------------------


def test_api_answers_and_every_error_are_never_cached_and_the_page_is_revalidated(service: Service) -> None:
    # What docs/endpoints.md promises about Cache-Control.
    client = service.client
    for response in (
        client.get("/client-config"),
        client.get("/healthz"),
        client.get("/auth"),  # 401
        client.get("/no-such-page"),  # 404
        client.get("/static/no-such-file.js"),  # 404 from the static files
        client.put("/auth"),  # 405
        client.post("/login", content=b"x", headers={"content-type": "text/plain"}),  # 400
    ):
        assert_no_cache(response.headers)
    assert client.get("/").headers["cache-control"] == "no-cache"  # revalidated on every load
    a_file = next(path for path in sorted(WEB_DIR.iterdir()) if path.is_file())
    static = client.get(f"/static/{a_file.name}")
    assert static.status_code == 200 and "etag" in static.headers and "last-modified" in static.headers


def test_healthz(service: Service) -> None:
    response = service.client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_no_secret_password_or_token_is_ever_logged(
    make_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    svc = make_service(AUTHSERVER_DEMO_LOGIN="true", AUTHSERVER_LOG_LEVEL="debug")
    svc.add_user("alice", password="hunter2-very-secret")
    svc.client.post("/login", json={"username": "alice", "password": "wrong-password-xyz"})
    svc.login("alice", "hunter2-very-secret")
    token = svc.client.get("/auth").json()["token"]
    svc.client.get("/auth", params={"format": "tokenrequest"})
    svc.client.get("/auth", params={"clientId": "mallory"})
    svc.client.get("/auth", params={"ttl": "bad"})
    cookie = svc.client.cookies["authserver_session"]
    svc.client.post("/logout")
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    assert "login: clientId=alice" in text  # something was logged...
    for secret in (KEY_SECRET, "hunter2-very-secret", "wrong-password-xyz", token, cookie, cookie.split(".")[0]):
        assert secret not in text  # ...but never a credential


# --- hostile and unlucky requests: clear 4xx/5xx, never a crash, nothing leaked ------------------


def test_a_declared_oversized_body_is_refused_before_it_is_read(alice: Service) -> None:
    response = alice.client.post(
        "/auth", content=b"x" * 20000, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_ably_error(response, 413, 40009)


def test_a_streamed_oversized_body_is_cut_off(alice: Service) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b"a=" + b"x" * 1000 + b"&"

    response = alice.client.post(
        "/auth", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_ably_error(response, 413, 40009)


@pytest.mark.parametrize("ttl", ["²", "9" * 5000, "١٢٣", "0x10", " 5"])
def test_odd_ttl_values_are_400(alice: Service, ttl: str) -> None:
    assert_ably_error(alice.client.get("/auth", params={"ttl": ttl}), 400, 40003)


def test_identity_is_checked_before_params_so_a_logged_out_client_retries(service: Service) -> None:
    assert_ably_error(service.client.get("/auth?ttl=bad"), 401, 40101)


def test_body_params_win_over_the_auth_url_query(alice: Service) -> None:
    response = alice.client.post("/auth?ttl=90000", data={"ttl": "120000"})
    claims = verify(response.json()["token"])
    assert claims["exp"] - claims["iat"] == 120


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "\\ud800", "password": "x"}',
        b'{"username": "alice", "password": "\\udfff"}',
        b'{"username": ["alice"], "password": "x"}',
    ],
)
def test_login_with_unencodable_or_non_string_fields_is_400(service: Service, body: bytes) -> None:
    response = service.client.post("/login", content=body, headers={"content-type": "application/json"})
    assert_ably_error(response, 400, 40000)


def test_login_with_an_overlong_username_is_the_uniform_401(service: Service) -> None:
    response = service.client.post("/login", json={"username": "a" * 5000, "password": "x"})
    assert_ably_error(response, 401, 40101)


def test_made_up_long_names_share_the_counts_of_their_start(service: Service) -> None:
    # A flood of long names cannot grow the throttle's memory: they are counted under their first 128
    # characters, which no account name reaches.
    for n in range(10):
        guess = {"username": "x" * 200 + str(n), "password": "guess"}
        assert service.client.post("/login", json=guess).status_code == 401
    refused = service.client.post("/login", json={"username": "x" * 200 + "z", "password": "guess"})
    assert_ably_error(refused, 429, 42910)


def test_repeated_failed_logins_are_throttled_per_address_and_username(service: Service) -> None:
    service.add_user("alice")
    for _ in range(10):
        assert service.client.post("/login", json={"username": "alice", "password": "guess"}).status_code == 401
    refused = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert_ably_error(refused, 429, 42910)
    service.add_user("bob")
    assert service.client.post("/login", json={"username": "bob", "password": "correct horse"}).status_code == 200
    service.clock.advance(301)
    service.login("alice")


class Exploding:
    """An identity source with a bug: its exception message quotes a credential."""

    async def authenticate(self, credentials: Credentials, now: float) -> Identity | None:
        raise RuntimeError("lookup failed for password hunter2-in-a-message")


def test_an_unexpected_error_is_an_ably_500_and_its_message_is_not_logged(
    make_settings: SettingsFactory, fast_passwords: Passwords, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(), passwords=fast_passwords, authenticators=(Exploding(),))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/auth")
    assert_ably_error(response, 500, 50000)
    assert response.headers["x-content-type-options"] == "nosniff"
    logged = "\n".join(r.getMessage() + str(r.exc_info) + str(r.exc_text) for r in caplog.records)
    assert "RuntimeError" in logged and "hunter2" not in logged


class HeaderIdentity:
    """A stand-in upstream identity source: ``X-Test-User: name`` is trusted as that user."""

    async def authenticate(self, credentials: Credentials, now: float) -> Identity | None:
        user = credentials.headers.get("x-test-user")
        return None if user is None else Identity(subject=user, client_id=user, role="user")


def test_an_extra_identity_source_plugs_in_beside_the_session(
    make_settings: SettingsFactory, fast_passwords: Passwords
) -> None:
    app = create_app(make_settings(), passwords=fast_passwords, authenticators=(HeaderIdentity(),))
    with TestClient(app) as client:
        claims = verify(client.get("/auth", headers={"x-test-user": "upstream-7"}).json()["token"])
        assert claims["x-ably-clientId"] == "upstream-7"
        assert "private:upstream-7" in json.loads(claims["x-ably-capability"])
        # not its credentials: the session cookie decides, and without one it is the usual 401
        assert_ably_error(client.get("/auth"), 401, 40101)
        Blocking(app.state.services.users, client).add("alice", "correct horse", role=None, client_id=None, now=0.0)
        assert client.post("/login", json={"username": "alice", "password": "correct horse"}).status_code == 200
        assert verify(client.get("/auth").json()["token"])["x-ably-clientId"] == "alice"


def test_the_login_throttle_follows_its_settings(make_service: ServiceFactory) -> None:
    service = make_service(AUTHSERVER_LOGIN_FAILURES="2", AUTHSERVER_LOGIN_FAILURE_WINDOW="60")
    service.add_user("alice")
    for _ in range(2):
        assert service.client.post("/login", json={"username": "alice", "password": "guess"}).status_code == 401
    refused = service.client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert_ably_error(refused, 429, 42910)
    assert refused.json()["error"]["message"] == "too many failed logins; try again in 1 minute"
    service.clock.advance(61)
    service.login("alice")


def test_only_wrong_passwords_count_against_the_throttle(make_service: ServiceFactory) -> None:
    """Each attempt is counted before its check and given back unless the password was wrong: the
    right password, a disabled account's right password, a name demo login cannot take."""
    service = make_service(AUTHSERVER_LOGIN_FAILURES="2", AUTHSERVER_LOGIN_FAILURES_PER_ADDRESS="2")
    service.add_user("alice")
    service.add_user("bob")
    service.users.set_disabled("bob", True)
    for _ in range(5):
        service.login("alice")
        assert_ably_error(
            service.client.post("/login", json={"username": "bob", "password": "correct horse"}), 403, 40300
        )
    for name in ("alice", "carol"):
        assert service.client.post("/login", json={"username": name, "password": "guess"}).status_code == 401
    assert_ably_error(service.client.post("/login", json={"username": "dave", "password": "guess"}), 429, 42910)


def test_the_throttle_and_the_login_gate_are_injected_into_the_app(
    make_settings: SettingsFactory, fast_passwords: Passwords
) -> None:
    throttle = MemoryThrottle(LoginThrottle(per_address=1, per_user_address=1, window=60))
    gate = ConcurrencyGate(slots=1, queue=0)
    app = create_app(make_settings(), passwords=fast_passwords, throttle=throttle, login_gate=gate)
    assert app.state.services.login_gate is gate
    with TestClient(app) as client:
        assert client.post("/login", json={"username": "x", "password": "guess"}).status_code == 401
        assert_ably_error(client.post("/login", json={"username": "y", "password": "guess"}), 429, 42910)


def test_session_endpoint_shows_the_user_claim_and_publish_rate_a_channel_gets(
    make_service: ServiceFactory, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'default_role = "member"\n[roles.member.capability]\n"*" = ["*"]\n'
        '[roles.member.channel_claims]\n"*" = "anywhere"\n"private:{clientId}" = "owner"\n'
        '[roles.member.publish_rate]\n"chat:*" = 0.5\n',
        encoding="utf-8",
    )
    svc = make_service(AUTHSERVER_POLICY=str(policy))
    svc.add_user("alice")
    svc.login("alice")

    def described(channel: str) -> dict[str, object]:
        body: dict[str, object] = svc.client.get("/session", params={"channel": channel}).json()["channel"]
        return {k: v for k, v in body.items() if k in ("userClaim", "publishRate")}

    assert described("private:alice") == {"userClaim": "owner"}
    assert described("chat:lobby") == {"userClaim": "anywhere", "publishRate": 0.5}
    assert described("[meta]log") == {}


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"cookie", b"authserver_session=abc.def; theme=dark")],
        [(b"cookie", b'a="quoted value"; b=2; =bare; c')],
        [(b"cookie", b"authserver_session=first"), (b"cookie", b"authserver_session=second; x=1")],
    ],
)
def test_auth_reads_the_cookies_exactly_as_starlette_does(headers: list[tuple[bytes, bytes]]) -> None:
    scope = {"type": "http", "method": "GET", "path": "/auth", "headers": headers, "query_string": b""}
    for _ in range(2):  # the second reading comes from memory
        assert dict(request_cookies(Request(scope))) == Request(scope).cookies
