"""``POST /oidc/backchannel-logout`` (OpenID Connect Back-Channel Logout 1.0) with logout tokens signed by
the real oidc-provider's own keys: a valid one is 200 ``no-store`` and refuses from then on the upstream
tokens of that user issued before it (403 40305, final); a replayed, malformed or hostile one is 400
``invalid_request`` and changes nothing. Every one received is audited, without its contents."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from typing import Any

import jwt
import pytest
import redis
from realservers import Postgres
from realservers import Redis as RedisServer
from starlette.testclient import TestClient

from authserver.infra import audit
from authserver.infra.logs import LogLimiter

from .conftest import AUDIENCE, LOGOUT_EVENT, PAGE_CLIENT_ID, ClientFactory, Provider, unique
from conftest import fresh_postgres_url

pytestmark = pytest.mark.node
PATH = "/oidc/backchannel-logout"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_logout(client: TestClient, token: str) -> Any:
    return client.post(PATH, data={"logout_token": token})


def assert_refused(response: Any, words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == "invalid_request"
    assert words in body["error_description"], body


@pytest.fixture
def client(shared_provider: Provider, make_client: ClientFactory) -> TestClient:
    return make_client(shared_provider, OIDC_BACKCHANNEL_LOGOUT_AUDIENCE=PAGE_CLIENT_ID)


def test_a_valid_logout_token_refuses_the_users_earlier_upstream_tokens_for_good(
    shared_provider: Provider, client: TestClient
) -> None:
    user, now = unique("ulla"), time.time()
    before = shared_provider.sign(sub=user, now=now - 20)
    other = shared_provider.sign(sub=unique("otto"), now=now - 20)
    assert client.get("/auth", headers=bearer(before)).status_code == 200  # verified and remembered

    response = post_logout(client, shared_provider.logout_token(sub=user, now=now - 10))
    assert (response.status_code, response.content) == (200, b"")
    assert response.headers["cache-control"] == "no-store"

    refused = client.get("/auth", headers=bearer(before))
    assert refused.status_code == 403  # final: ably-js goes FAILED rather than retrying with the same token
    assert refused.json()["error"]["code"] == 40305
    assert "logged this user (or this session) out" in refused.json()["error"]["message"]
    exchanged = client.post("/token", data=exchange(before))  # the token exchange refuses it too
    assert (exchanged.status_code, exchanged.json()["error"]) == (400, "invalid_grant")
    assert client.get("/auth", headers=bearer(other)).status_code == 200  # another user: untouched
    after = shared_provider.sign(sub=user, now=now)  # signed in again at the provider since
    assert client.get("/auth", headers=bearer(after)).status_code == 200


def exchange(token: str) -> dict[str, str]:
    return {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
    }


def test_a_token_authenticated_before_the_logout_is_refused_even_if_issued_after(
    shared_provider: Provider, client: TestClient
) -> None:
    """A refreshed token keeps the ``auth_time`` of the sign-in it came from: that sign-in was logged out."""
    user, now = unique("rita"), time.time()
    assert post_logout(client, shared_provider.logout_token(sub=user, now=now - 10)).status_code == 200
    refreshed = shared_provider.sign(sub=user, now=now, auth_time=int(now) - 60)
    assert client.get("/auth", headers=bearer(refreshed)).json()["error"]["code"] == 40305


def test_a_logout_by_sid_refuses_only_tokens_of_that_provider_session(
    shared_provider: Provider, client: TestClient
) -> None:
    user, now = unique("sid"), time.time()
    in_session = shared_provider.sign(sub=user, sid="browser-1", now=now - 20)
    other_session = shared_provider.sign(sub=user, sid="browser-2", now=now - 20)
    no_session = shared_provider.sign(sub=user, now=now - 20)
    assert post_logout(client, shared_provider.logout_token(sub=user, sid="browser-1", now=now - 10)).status_code == 200
    assert client.get("/auth", headers=bearer(in_session)).status_code == 403
    assert client.get("/auth", headers=bearer(other_session)).status_code == 200
    assert client.get("/auth", headers=bearer(no_session)).status_code == 200


def test_a_replayed_logout_token_is_refused_and_changes_nothing(shared_provider: Provider, client: TestClient) -> None:
    user, now = unique("rex"), time.time()
    token = shared_provider.logout_token(sub=user, now=now - 10)
    assert post_logout(client, token).status_code == 200
    signed_in_again = shared_provider.sign(sub=user, now=now)
    assert client.get("/auth", headers=bearer(signed_in_again)).status_code == 200
    assert_refused(post_logout(client, token), "replayed")
    assert client.get("/auth", headers=bearer(signed_in_again)).status_code == 200


#: name -> (logout token maker (provider, sub, now), the words of the refusal)
HOSTILE: dict[str, tuple[Any, str]] = {
    "not a JWT": (lambda p, sub, now: "not.a.jwt", "malformed"),
    "the bearer audience": (lambda p, sub, now: p.logout_token(sub=sub, aud=AUDIENCE), "audience is not"),
    "an unknown issuer": (lambda p, sub, now: p.logout_token(sub=sub, iss="https://evil.test"), "not send back"),
    "a nonce (an ID token)": (lambda p, sub, now: p.logout_token(sub=sub, nonce="n"), "nonce"),
    "no events": (lambda p, sub, now: p.logout_token(sub=sub, events=None), "events"),
    "another event": (lambda p, sub, now: p.logout_token(sub=sub, events={"urn:other": {}}), "events"),
    "the event not an object": (lambda p, sub, now: p.logout_token(sub=sub, events={LOGOUT_EVENT: 1}), "events"),
    "neither sub nor sid": (lambda p, sub, now: p.logout_token(sub=None), "neither sub nor sid"),
    "no jti": (lambda p, sub, now: p.logout_token(sub=sub, jti=None), "no jti"),
    "no iat": (lambda p, sub, now: p.logout_token(sub=sub, iat=None), "no iat"),
    "iat too old": (lambda p, sub, now: p.logout_token(sub=sub, now=now - 400, exp=int(now) + 60), "too old"),
    "iat in the future": (lambda p, sub, now: p.logout_token(sub=sub, now=now + 120), "future"),
    "expired": (lambda p, sub, now: p.logout_token(sub=sub, exp=int(now) - 60), "expired"),
    "an access token's typ": (lambda p, sub, now: p.logout_token(sub=sub, typ="at+jwt"), "typ"),
    "iat NaN": (lambda p, sub, now: p.logout_token(sub=sub, iat=float("nan")), "iat is not a finite number"),
    "iat Infinity": (lambda p, sub, now: p.logout_token(sub=sub, iat=float("inf")), "iat is not a finite number"),
    "exp NaN": (lambda p, sub, now: p.logout_token(sub=sub, exp=float("nan")), "exp is not a finite number"),
    "exp Infinity": (lambda p, sub, now: p.logout_token(sub=sub, exp=float("inf")), "exp is not a finite number"),
    "auth_time NaN": (lambda p, sub, now: p.logout_token(sub=sub, auth_time=float("nan")), "auth_time"),
    "an HMAC algorithm": (lambda p, sub, now: p.hs256_with_public_key(), "not allowed"),
    "a forged signature": (lambda p, sub, now: p.logout_token(sub=sub)[:-8] + "AAAAAAAA", "signature"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_malformed_or_hostile_logout_token_is_400_and_logs_nobody_out(
    shared_provider: Provider, client: TestClient, case: str
) -> None:
    user, now = unique("vic"), time.time()
    earlier = shared_provider.sign(sub=user, now=now - 30)
    make, words = HOSTILE[case]
    assert_refused(post_logout(client, make(shared_provider, user, now)), words)
    assert client.get("/auth", headers=bearer(earlier)).status_code == 200


@pytest.mark.parametrize(
    ("body", "headers", "words"),
    [
        ('{"logout_token": "x"}', {"Content-Type": "application/json"}, "x-www-form-urlencoded"),
        ("other=1", FORM, "exactly one logout_token"),
        ("logout_token=a&logout_token=b", FORM, "exactly one logout_token"),
        ("logout_token=" + "a" * 40_000, FORM, "body over"),
    ],
)
def test_a_request_without_exactly_one_form_encoded_logout_token_is_400(
    client: TestClient, body: str, headers: dict[str, str], words: str
) -> None:
    assert_refused(client.post(PATH, content=body, headers=headers), words)


def test_the_endpoint_is_off_unless_the_issuer_has_a_logout_audience(
    shared_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(shared_provider)
    response = post_logout(client, shared_provider.logout_token())
    assert response.status_code in (404, 405)


def test_every_logout_token_is_audited_without_its_contents(
    shared_provider: Provider, client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Refusals (which anyone can send) are logged a few a minute, the rest counted; every one is in the metrics."""
    monkeypatch.setattr(audit, "_logout_refusals", LogLimiter(burst=20, interval=60.0))  # others' lines used some
    caplog.set_level(logging.INFO, logger="authserver.audit")
    user, jti = unique("aud"), uuid.uuid4().hex
    token = shared_provider.logout_token(sub=user, jti=jti, sid="sess-1")
    assert post_logout(client, token).status_code == 200
    assert post_logout(client, token).status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "authserver.audit"]
    assert f"backchannel logout accepted: issuer={shared_provider.issuer} by=sid sessions_ended=0" in lines
    refused = "backchannel logout refused: status=400 logout token refused: replayed (its jti was received before)"
    assert refused in lines
    logged = "\n".join(lines)
    for secret in (token, user, jti, "sess-1"):
        assert secret not in logged
    metrics = client.get("/metrics").text
    assert 'authserver_backchannel_logouts_total{outcome="accepted"} 1.0' in metrics
    assert 'authserver_backchannel_logouts_total{outcome="refused"} 1.0' in metrics


def test_two_workers_on_redis_and_postgresql_share_the_replay_set_and_the_logout(
    shared_provider: Provider, make_client: ClientFactory, redis_url: str, postgres: Postgres
) -> None:
    """Two service instances (as two workers: each its own memory) on one PostgreSQL and one Redis: a
    logout token posted to one is a replay at the other (its jti is in Redis), and the other at once
    refuses the user's earlier upstream token it had remembered (the logout is announced through Redis)."""
    env = {
        "OIDC_BACKCHANNEL_LOGOUT_AUDIENCE": PAGE_CLIENT_ID,
        "REDIS_URL": redis_url,
        "DATABASE_URL": asyncio.run(fresh_postgres_url(postgres)),
        "AUTHSERVER_SESSION_RECHECK": "3600",  # only an announcement can make the other worker look again
    }
    first, second = make_client(shared_provider, **env), make_client(shared_provider, **env)
    user, now = unique("wanda"), time.time()
    earlier = shared_provider.sign(sub=user, now=now - 20)
    assert second.get("/auth", headers=bearer(earlier)).status_code == 200  # remembered by the second

    token = shared_provider.logout_token(sub=user, now=now - 10)
    assert post_logout(first, token).status_code == 200
    assert_refused(post_logout(second, token), "replayed")
    with redis.Redis.from_url(redis_url) as client:
        assert len(client.keys("authserver:logout-jti:*")) == 1
    deadline = time.monotonic() + 5  # the announcement crosses Redis
    while second.get("/auth", headers=bearer(earlier)).status_code != 403:
        assert time.monotonic() < deadline, "the second worker still answers from its memory"
        time.sleep(0.02)


def test_while_redis_is_down_the_database_keeps_the_replay_set(
    shared_provider: Provider, make_client: ClientFactory, redis_url: str, redis_server: RedisServer
) -> None:
    """Redis not answering never fails a logout: the ids go to the database meanwhile, replays still refused."""
    client = make_client(shared_provider, OIDC_BACKCHANNEL_LOGOUT_AUDIENCE=PAGE_CLIENT_ID, REDIS_URL=redis_url)
    redis_server.stop()
    try:
        token = shared_provider.logout_token(sub=unique("rhea"))
        assert post_logout(client, token).status_code == 200
        assert_refused(post_logout(client, token), "replayed")
    finally:
        redis_server.start()


def with_header(provider: Provider, token: str, **header: Any) -> str:
    """``token``'s claims signed again by the provider's key under a header with ``header`` set
    (PyJWT drops an empty ``typ``, so the header is written here)."""
    jwk = provider.key("EC")
    head = {"alg": jwk["alg"], "kid": jwk["kid"], **header}
    signing_input = f"{b64url(json.dumps(head).encode())}.{token.split('.')[1]}".encode()
    signature = jwt.get_algorithm_by_name(jwk["alg"]).sign(signing_input, jwt.PyJWK(jwk).key)
    return f"{signing_input.decode()}.{b64url(signature)}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("typ", [[], {}, ["JWT"], {"JWT": 1}, 1, True], ids=repr)
def test_a_typ_header_that_is_not_a_string_is_400_and_audited(
    shared_provider: Provider,
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    typ: Any,
) -> None:
    monkeypatch.setattr(audit, "_logout_refusals", LogLimiter(burst=20, interval=60.0))
    caplog.set_level(logging.INFO, logger="authserver.audit")
    token = with_header(shared_provider, shared_provider.logout_token(sub=unique("tia")), typ=typ)
    assert_refused(post_logout(client, token), "typ")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "authserver.audit"]
    assert line.startswith("backchannel logout refused: status=400 logout token refused: its typ header")


def test_a_logout_that_fails_unexpectedly_is_audited_as_a_500(
    shared_provider: Provider,
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(audit, "_logout_refusals", LogLimiter(burst=20, interval=60.0))
    logouts = client.app.state.services.logouts  # type: ignore[attr-defined]
    monkeypatch.setattr(logouts, "apply", broken)
    caplog.set_level(logging.INFO, logger="authserver.audit")
    response = post_logout(client, shared_provider.logout_token(sub=unique("uma")))
    assert response.status_code == 500 and "a bug" not in response.text
    lines = [r.getMessage() for r in caplog.records if r.name == "authserver.audit"]
    assert lines == ["backchannel logout refused: status=500 internal error"]
