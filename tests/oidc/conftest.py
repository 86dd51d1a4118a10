"""A real OpenID Connect provider (the npm ``oidc-provider`` package under Node, ``provider.mjs``) and
the token service configured to trust it.

Tokens are made inside each test (never at collection): by the provider itself (client credentials,
its login pages) or signed in the test with exactly the private keys the provider publishes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import select
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
import pytest
from starlette.testclient import TestClient

from authserver.config import Settings
from authserver.http.app import create_app

from conftest import SettingsFactory

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
NODE_MODULES = REPO / ".cache" / "node" / "node_modules"
LAUNCHER = Path(__file__).with_name("provider.mjs")
#: Seconds the provider's launcher has to print its line (it takes well under one).
STARTUP_S = 60
AUDIENCE = "https://chat.authserver.test"
PAGE_CLIENT_ID = "authserver-page"
PAGE_CLIENT_SECRET = "page-client-secret-0123456789-abcdefghijklmnop"
WORKER_CLIENT_ID = "backend-worker"
WORKER_CLIENT_SECRET = "worker-client-secret-0123456789-abcdefghijklm"
ADMIN_CLIENT_ID = "support-tool"
ADMIN_CLIENT_SECRET = "admin-client-secret-0123456789-abcdefghijklm"
#: The role claim of the admin client's tokens: a policy role and the admin API's role.
ADMIN_ROLES = ["user", "authserver-admin"]
STARTUP_TIMEOUT = 30.0
LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: The page client's redirect URI unless a test registers its own (provider.mjs's default).
UNUSED_REDIRECT = "http://127.0.0.1/unused"


def skip_reason() -> str | None:
    if NODE is None:
        return "node is not installed (scripts/setup --test installs it)"
    if not (NODE_MODULES / "oidc-provider" / "package.json").is_file():
        return f"oidc-provider is not installed in {NODE_MODULES} (scripts/setup --test installs it)"
    return None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Provider:
    """A running oidc-provider: its issuer URL and the private JWKs it signs with."""

    process: subprocess.Popen[str]
    issuer: str
    keys: list[dict[str, Any]]
    stderr_lines: list[str] = field(default_factory=list)

    def key(self, kty: str) -> dict[str, Any]:
        return next(k for k in self.keys if k["kty"] == kty)

    def public_jwks(self) -> dict[str, Any]:
        return httpx.get(f"{self.issuer}/jwks", timeout=10).json()  # type: ignore[no-any-return]

    def sign(
        self,
        claims: dict[str, Any] | None = None,
        *,
        kty: str = "EC",
        alg: str | None = None,
        kid: str | None = "from-key",
        now: float | None = None,
        lifetime: float = 300,
        typ: str | None = None,
        **overrides: Any,
    ) -> str:
        """A token signed with the provider's own private key, claims made now (``overrides`` win;
        a value of ``None`` drops that claim)."""
        jwk = self.key(kty)
        issued = int(time.time() if now is None else now)
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": issued,
            "exp": issued + int(lifetime),
            **(claims or {}),
            **overrides,
        }
        body = {k: v for k, v in body.items() if v is not None}
        headers = {} if kid is None else {"kid": jwk["kid"] if kid == "from-key" else kid}
        if typ is not None:
            headers["typ"] = typ
        return jwt.encode(body, jwt.PyJWK(jwk).key, algorithm=alg or jwk["alg"], headers=headers)

    def logout_token(
        self, *, now: float | None = None, typ: str | None = "logout+jwt", kty: str = "EC", **overrides: Any
    ) -> str:
        """A back-channel logout token for the page client, made as the provider makes them (``typ``
        logout+jwt, a fresh ``jti``, the event, ``sub`` alice, two minutes of life); ``overrides`` win
        (``None`` drops a claim)."""
        claims = {"aud": PAGE_CLIENT_ID, "jti": uuid.uuid4().hex, "events": {LOGOUT_EVENT: {}}}
        return self.sign({**claims, **overrides}, typ=typ, kty=kty, now=now, lifetime=120)

    def hs256_with_public_key(self) -> str:
        """The key-confusion attack: HS256 with the provider's public RSA key (PEM) as the HMAC secret."""
        public = jwt.PyJWK({k: v for k, v in self.key("RSA").items() if k in ("kty", "n", "e")}).key
        from cryptography.hazmat.primitives import serialization

        pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        now = int(time.time())
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.key("RSA")["kid"]}).encode())
        payload = b64url(
            json.dumps({"iss": self.issuer, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 300}).encode()
        )
        signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(signature)}"

    def configure(
        self,
        *,
        redirect_uris: list[str] | None = None,
        rotate: bool = False,
        backchannel_logout_uri: str | None = None,
        backchannel_sid: bool = False,
    ) -> None:
        """Swap the provider instance: new redirect URIs for the page client, and/or fresh signing keys,
        and/or the page client's back-channel logout URI (and whether its logout tokens carry ``sid``)."""
        body: dict[str, Any] = {"rotate": rotate}
        if redirect_uris is not None:
            body["redirectUris"] = redirect_uris
        if backchannel_logout_uri is not None:
            body["backchannelLogoutUri"] = backchannel_logout_uri
            body["backchannelSid"] = backchannel_sid
        response = httpx.post(f"{self.issuer}/test/configure", json=body, timeout=30)
        response.raise_for_status()
        self.keys = response.json()["keys"]

    def client_credentials_token(self, *, admin: bool = False) -> str:
        """An access token (a JWT for AUDIENCE) the provider issues to the backend worker client, or
        with ``admin`` to the admin client (its token's ``roles`` claim is :data:`ADMIN_ROLES`)."""
        client = (ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET) if admin else (WORKER_CLIENT_ID, WORKER_CLIENT_SECRET)
        response = httpx.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "scope": "ably", "resource": AUDIENCE},
            auth=client,
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def sign_in(self, browser: httpx.Client, name: str, redirect_uri: str = UNUSED_REDIRECT) -> dict[str, Any]:
        """Log ``name`` in at the provider's own pages as a browser would (``browser`` keeps its cookies: the
        provider session), for the page client, and return its token response (``id_token``, and a JWT
        ``access_token`` for AUDIENCE)."""
        verifier = secrets.token_urlsafe(48)
        params = {
            "client_id": PAGE_CLIENT_ID,
            "response_type": "code",
            "scope": "openid ably",
            "redirect_uri": redirect_uri,
            "resource": AUDIENCE,
            "state": secrets.token_urlsafe(8),
            "nonce": secrets.token_urlsafe(8),
            "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        location = follow_forms(browser, browser.get(f"{self.issuer}/auth", params=params), name, redirect_uri)
        code = parse_qs(urlsplit(location).query)["code"][0]
        response = browser.post(
            f"{self.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(PAGE_CLIENT_ID, PAGE_CLIENT_SECRET),
        )
        response.raise_for_status()
        return dict(response.json())

    def end_session(self, browser: httpx.Client) -> httpx.Response:
        """The user of ``browser`` signs out at the provider ("Yes, sign me out"): the provider ends its
        session and, before it answers, sends its back-channel logouts."""
        page = browser.get(f"{self.issuer}/session/end")
        page.raise_for_status()
        xsrf = re.search(r'name="xsrf" value="([^"]+)"', page.text)
        assert xsrf is not None, page.text[:500]
        return browser.post(f"{self.issuer}/session/end/confirm", data={"xsrf": xsrf.group(1), "logout": "yes"})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stdout is not None and not self.process.stdout.closed:
            self.process.stdout.close()


@dataclass
class ProviderRun:
    started: list[Provider] = field(default_factory=list)

    def start(self) -> Provider:
        assert NODE is not None
        scenario = {
            "audience": AUDIENCE,
            "pageClientId": PAGE_CLIENT_ID,
            "pageClientSecret": PAGE_CLIENT_SECRET,
            "workerClientId": WORKER_CLIENT_ID,
            "workerClientSecret": WORKER_CLIENT_SECRET,
            "adminClientId": ADMIN_CLIENT_ID,
            "adminClientSecret": ADMIN_CLIENT_SECRET,
            "adminRoles": ADMIN_ROLES,
        }
        env = {**os.environ, "ABLY_JS_NODE_MODULES": str(NODE_MODULES), "SCENARIO": json.dumps(scenario)}
        # Once seen in CI: a launcher that never printed its line (alive, silent) held a test until its
        # timeout. It gets STARTUP_S, then one more try; what it wrote on stderr goes in the failure.
        problems = []
        for _ in range(2):
            with tempfile.TemporaryFile() as stderr:
                argv = [NODE, str(LAUNCHER)]
                process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
                assert process.stdout is not None
                ready, _, _ = select.select([process.stdout], [], [], STARTUP_S)
                line = process.stdout.readline() if ready else ""  # one line, once it listens
                if line.startswith("{"):
                    announced = json.loads(line)
                    provider = Provider(process, announced["issuer"], announced["keys"])
                    self.started.append(provider)
                    return provider
                process.kill()
                process.wait()
                process.stdout.close()
                stderr.seek(0)
                said = stderr.read().decode(errors="replace")[-1000:]
                problems.append(f"printed {line[:200]!r} within {STARTUP_S} s; stderr: {said!r}")
        pytest.fail("oidc-provider did not start: " + " | ".join(problems))


@pytest.fixture(scope="session")
def provider_runs() -> Iterator[ProviderRun]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    runs = ProviderRun()
    yield runs
    for provider in runs.started:
        provider.stop()


@pytest.fixture(scope="session")
def shared_provider(provider_runs: ProviderRun) -> Provider:
    """One provider for the tests that do not change it (no rotation, no stop)."""
    return provider_runs.start()


@pytest.fixture
def own_provider(provider_runs: ProviderRun) -> Iterator[Provider]:
    """A provider of the test's own, which it may rotate or stop."""
    provider = provider_runs.start()
    yield provider
    provider.stop()


def oidc_env(provider: Provider, **extra: str) -> dict[str, str]:
    return {"OIDC_ISSUER": provider.issuer, "OIDC_AUDIENCE": AUDIENCE, **extra}


_FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*>(.*?)</form>', re.S)
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')


def follow_forms(browser: httpx.Client, response: httpx.Response, name: str, stop_at: str) -> str:
    """Follow the provider's redirects and fill in its login and consent forms (devInteractions: any name,
    any password) until a redirect to ``stop_at``; returns that location."""
    for _ in range(20):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(stop_at):
                return location
            response = browser.get(location)
            continue
        response.raise_for_status()
        form = _FORM.search(response.text)
        assert form is not None, response.text[:500]
        fields = dict(_HIDDEN.findall(form.group(2)))
        if 'name="login"' in form.group(2):
            fields.update(login=name, password="any password")
        response = browser.post(urljoin(str(response.url), html.unescape(form.group(1))), data=fields)
    raise AssertionError("the provider's login did not come back")


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[ClientFactory]:
    """The service trusting ``provider`` (real clock), behind Starlette's TestClient."""
    clients: list[TestClient] = []

    def make(provider: Provider, **env: str) -> TestClient:
        settings: Settings = make_settings(**oidc_env(provider, **env))
        client = TestClient(create_app(settings), base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
