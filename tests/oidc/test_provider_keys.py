"""The provider's keys over time: rotation at the provider, a flood of unknown kids, the provider
stopped or silent after start-up, and the cache of verified tokens."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from authserver.core.callers import Identity
from authserver.http.app import create_app
from authserver.identity.oidc.backchannel import Stamp
from authserver.identity.oidc.bearer import VerifiedTokens
from authserver.identity.oidc.jwks import ProviderKeys

from .conftest import AUDIENCE, ClientFactory, Provider, unique
from conftest import SettingsFactory

pytestmark = pytest.mark.node


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def keys_of(client: TestClient, issuer: str) -> ProviderKeys:
    provider: ProviderKeys = client.app.state.services.upstream.providers[issuer]  # type: ignore[attr-defined]
    return provider


def test_a_key_rotated_in_at_the_provider_is_fetched_on_first_use_and_the_old_one_stops_working(
    own_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(own_provider)
    keys = keys_of(client, own_provider.issuer)
    keys.refetch_interval = 0.0  # no rate limit here (the flood test below has one)
    old_signer = dict(own_provider.key("EC"))
    assert client.get("/auth", headers=bearer(own_provider.sign(sub="alice"))).status_code == 200

    own_provider.configure(rotate=True)
    assert own_provider.key("EC")["kid"] != old_signer["kid"]
    fetches = keys.fetches
    response = client.get("/auth", headers=bearer(own_provider.sign(sub="bob")))
    assert response.status_code == 200, response.text
    assert keys.fetches == fetches + 1  # one re-fetch for the new kid

    own_provider.keys = [old_signer]  # a token signed with the retired key, made after the rotation
    retired = client.get("/auth", headers=bearer(own_provider.sign(sub="mallory")))
    assert retired.status_code == 401 and "unknown kid" in retired.json()["error"]["message"]


def test_a_flood_of_unknown_kids_costs_the_provider_at_most_one_fetch(
    own_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(own_provider)
    keys = keys_of(client, own_provider.issuer)
    keys.refetch_interval = 3600.0
    assert client.get("/auth", headers=bearer(own_provider.sign())).status_code == 200
    fetches = keys.fetches
    for _ in range(25):
        response = client.get("/auth", headers=bearer(own_provider.sign(kid=unique("random"))))
        assert response.status_code == 401
    assert keys.fetches - fetches <= 1


def test_with_the_provider_stopped_the_fetched_keys_keep_working_and_an_unknown_kid_gets_401(
    own_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(own_provider)
    keys = keys_of(client, own_provider.issuer)
    assert client.get("/auth", headers=bearer(own_provider.sign(sub="alice"))).status_code == 200
    own_provider.stop()
    keys.refetch_interval = 0.0  # every unknown kid tries the (stopped) provider
    keys.max_age = 0.0  # and every use refreshes in the background
    keys.stale_retry = 0.0

    for kty in ("RSA", "EC", "OKP"):
        response = client.get("/auth", headers=bearer(own_provider.sign(kty=kty, sub=unique("u"))))
        assert response.status_code == 200, response.text
    unknown = client.get("/auth", headers=bearer(own_provider.sign(kid="rotated-meanwhile")))
    assert unknown.status_code == 401 and "unknown kid" in unknown.json()["error"]["message"]
    assert keys.last_error is not None and "Connect" in keys.last_error
    assert client.get("/auth", headers=bearer(own_provider.sign(sub="carol"))).status_code == 200


def test_a_provider_never_reached_gets_503_which_clients_retry(
    own_provider: Provider, make_client: ClientFactory
) -> None:
    own_provider.stop()
    client = make_client(own_provider)
    response = client.get("/auth", headers=bearer(own_provider.sign()))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == 50300


@pytest.fixture
def silent_issuer() -> Iterator[str]:
    """A loopback port that accepts connections and never answers (a hung provider)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def test_a_provider_that_never_answers_costs_a_bounded_wait_then_503(
    shared_provider: Provider, make_settings: SettingsFactory, silent_issuer: str
) -> None:
    settings = make_settings(OIDC_ISSUER=silent_issuer, OIDC_AUDIENCE=AUDIENCE)
    with TestClient(create_app(settings)) as client:
        hung = keys_of(client, silent_issuer)
        response = client.get("/auth", headers=bearer(shared_provider.sign(iss=silent_issuer)))
        assert response.status_code == 503
        assert hung.last_error == "timed out"


def test_a_verified_token_is_answered_from_memory_until_its_exp_and_never_after(
    own_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(own_provider)
    keys = keys_of(client, own_provider.issuer)
    token = own_provider.sign(sub="alice")
    assert client.get("/auth", headers=bearer(token)).status_code == 200
    own_provider.configure(rotate=True)  # the key that signed it is gone at the provider...
    keys.refetch_interval = 0.0
    client.get("/auth", headers=bearer(own_provider.sign()))  # ...and from the service's keys
    assert client.get("/auth", headers=bearer(token)).status_code == 200  # verified once, remembered


def test_the_verified_token_cache_is_bounded_and_never_serves_an_expired_token() -> None:
    cache = VerifiedTokens(limit=3)
    alice = Identity("s", "alice", "user", "oidc:x")
    stamp = Stamp("x", "alice", None, 10.0)
    for n in range(5):
        cache.put(cache.digest(f"token-{n}"), alice, expires=100.0, stamp=stamp)
    assert len(cache) == 3
    assert cache.get(cache.digest("token-0"), now=50.0) is None  # the oldest went
    assert cache.get(cache.digest("token-4"), now=99.9) == (alice, stamp)
    assert cache.get(cache.digest("token-4"), now=100.0) is None  # at exp: gone
    assert len(cache) == 2


def test_stale_keys_are_refreshed_in_the_background_while_the_cached_ones_keep_answering(
    own_provider: Provider, make_client: ClientFactory
) -> None:
    client = make_client(own_provider)
    keys = keys_of(client, own_provider.issuer)
    assert client.get("/auth", headers=bearer(own_provider.sign())).status_code == 200
    keys.refetch_interval = 3600.0  # no re-fetch for unknown kids: only the background refresh can help
    old_signer = dict(own_provider.key("EC"))
    own_provider.configure(rotate=True)
    new_kid = own_provider.key("EC")["kid"]
    keys.max_age = 0.0  # the cached keys are stale now
    keys.stale_retry = 0.0
    rotated_signers = own_provider.keys
    own_provider.keys = [old_signer]
    stale = client.get("/auth", headers=bearer(own_provider.sign(sub=unique("u"))))
    assert stale.status_code == 200  # answered with the cached key, a refresh started behind it
    deadline = time.monotonic() + 30
    while keys.current is None or new_kid not in keys.current.keys:
        assert time.monotonic() < deadline, "the background refresh did not bring the rotated keys"
        time.sleep(0.05)
    own_provider.keys = rotated_signers
    assert client.get("/auth", headers=bearer(own_provider.sign(sub=unique("u")))).status_code == 200
