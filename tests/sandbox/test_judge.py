"""Token judgement: what the sandbox accepts and, for each hostile token, the Ably code it answers with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from authserver.core.capabilities import Capability
from authserver.core.keys import AblyKey
from authserver.core.tokens import sign_jwt
from authserver.errors import AuthServerError
from authserver.sandbox.grants import JudgedCredential, Keyring
from authserver.sandbox.judge import TokenJudge
from authserver.sandbox.limits import SandboxLimits
from authserver.sandbox.native_tokens import IssuedTokens
from authserver.sandbox.revocation import Revocation, Revocations, RevocationTarget

KEY = AblyKey("appId.keyId", "secretSecretSecret")
NOW = 1_700_000_000  # seconds
NOW_MS = NOW * 1000
ALL = '{"*":["*"]}'


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(header: dict[str, Any], claims: dict[str, Any], *, secret: str = KEY.secret) -> str:
    """A JWT with exactly this header and these claims, HMAC-SHA256 signed with ``secret``."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iat": NOW - 10, "exp": NOW + 3590, "x-ably-capability": ALL, "x-ably-clientId": "user-1"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


HEADER = {"alg": "HS256", "kid": KEY.name, "typ": "JWT"}


def make_judge(
    *, key_capabilities: dict[str, Capability] | None = None, limits: SandboxLimits | None = None
) -> tuple[TokenJudge, IssuedTokens, Revocations]:
    issued = IssuedTokens(100)
    revocations = Revocations(100, max_token_ttl_ms=86_400_000)
    keyring = Keyring([KEY], key_capabilities)
    judge = TokenJudge(keyring, limits or SandboxLimits(), issued=issued, revocations=revocations)
    return judge, issued, revocations


def test_known_answer_vector_from_the_spec_is_accepted() -> None:
    token = (
        "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFwcElkLmtleUlkIiwidHlwIjoiSldUIn0."
        "eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwieC1hYmx5LWNhcGFiaWxpdHkiOiJ7XCIqXCI6W1wiKlwiXX0iLCJ4LWFibHktY2xpZW50SWQiOiJ1c2VyLTEifQ."
        "DexJ5kRhfoffT98cBl0SWfW4gkTGXonGQluEMgc8KoI"
    )
    judge, _, _ = make_judge()
    grant = judge.judge(token, now_ms=NOW_MS + 1000)
    assert grant == JudgedCredential(
        "jwt", KEY.name, Capability.parse(ALL).intersect(Capability.all()), "user-1", NOW_MS, NOW_MS + 3_600_000
    )


def test_token_from_the_token_service_is_accepted() -> None:
    token = sign_jwt(KEY, capability='{"chat:*":["publish"]}', client_id=None, issued_at=NOW, expires_at=NOW + 60)
    grant = make_judge()[0].judge(token, now_ms=NOW_MS)
    assert grant.client_id is None
    assert grant.capability.allows("chat:1", "publish")
    assert not grant.capability.allows("chat:1", "subscribe")


def test_capability_is_the_intersection_of_token_and_key() -> None:
    judge, _, _ = make_judge(key_capabilities={KEY.name: Capability.parse('{"chat:*":["subscribe","publish"]}')})
    grant = judge.judge(forge(HEADER, claims()), now_ms=NOW_MS)
    assert grant.capability.to_json() == '{"chat:*":["publish","subscribe"]}'


def test_fractional_iat_and_exp_are_accepted_to_the_millisecond() -> None:
    grant = make_judge()[0].judge(forge(HEADER, claims(iat=NOW - 0.5, exp=NOW + 60.25)), now_ms=NOW_MS)
    assert (grant.issued_ms, grant.expires_ms) == (NOW_MS - 500, NOW_MS + 60_250)


def test_iat_slightly_in_the_future_is_tolerated() -> None:
    grant = make_judge()[0].judge(forge(HEADER, claims(iat=NOW + 4)), now_ms=NOW_MS)
    assert grant.issued_ms == NOW_MS + 4000


OVERSIZED = forge(HEADER, claims(padding="x" * 9000))

HOSTILE: list[tuple[str, str, int, int]] = [
    ("wrong secret", forge(HEADER, claims(), secret="not-the-secret"), 40101, 401),
    ("unknown kid", forge({**HEADER, "kid": "appId.otherKey"}, claims()), 40101, 401),
    # Ably: 404/40400 for an app it does not have (ably-js rest/auth.test.js "JWT request with invalid key").
    ("kid of an unknown app", forge({**HEADER, "kid": "invalid.invalid"}, claims(), secret="invalid"), 40400, 404),
    ("missing kid", forge({"alg": "HS256", "typ": "JWT"}, claims()), 40144, 401),
    ("empty kid", forge({**HEADER, "kid": ""}, claims()), 40144, 401),
    ("alg none", forge({**HEADER, "alg": "none"}, claims()).rsplit(".", 1)[0] + ".", 40144, 401),
    ("RS256", forge({**HEADER, "alg": "RS256"}, claims()), 40144, 401),
    ("HS512", forge({**HEADER, "alg": "HS512"}, claims()), 40144, 401),
    ("missing iat", forge(HEADER, claims(iat=...)), 40144, 401),
    ("missing exp", forge(HEADER, claims(exp=...)), 40144, 401),
    ("iat not a number", forge(HEADER, claims(iat="yesterday")), 40144, 401),
    ("exp before iat", forge(HEADER, claims(iat=NOW, exp=NOW - 1 + 0)), 40144, 401),
    ("expired", forge(HEADER, claims(iat=NOW - 120, exp=NOW - 60)), 40142, 401),
    ("expires exactly now", forge(HEADER, claims(iat=NOW - 60, exp=NOW)), 40142, 401),
    # Ably: 40001 "issuedAt time must not be in the future" (ably/ably-js#1720), not a renewable 4014x.
    ("iat far in the future", forge(HEADER, claims(iat=NOW + 60, exp=NOW + 3600)), 40001, 400),
    ("revocable key, lifetime over 1 h", forge(HEADER, claims(iat=NOW - 10, exp=NOW + 3591)), 40003, 400),
    ("lifetime above 24 h", forge(HEADER, claims(iat=NOW, exp=NOW + 86_401)), 40003, 400),
    ("exp 1e306", forge(HEADER, claims(exp=1e306)), 40144, 401),
    ("iat -1e306", forge(HEADER, claims(iat=-1e306)), 40144, 401),
    ("exp 10**400", forge(HEADER, claims(exp=10**400)), 40144, 401),
    ("iat negative", forge(HEADER, claims(iat=-1)), 40144, 401),
    ("claims not ASCII", forge(HEADER, claims()).split(".")[0] + ".é.abc", 40144, 401),
    ("signature not ASCII", forge(HEADER, claims()).rsplit(".", 1)[0] + ".é", 40144, 401),
    ("capability missing", forge(HEADER, claims(**{"x-ably-capability": ...})), 40144, 401),
    ("capability not a string", forge(HEADER, claims(**{"x-ably-capability": {"*": ["*"]}})), 40144, 401),
    ("capability invalid JSON", forge(HEADER, claims(**{"x-ably-capability": "{not json"})), 40144, 401),
    ("capability unknown op", forge(HEADER, claims(**{"x-ably-capability": '{"*":["publish_"]}'})), 40144, 401),
    ("capability empty", forge(HEADER, claims(**{"x-ably-capability": "{}"})), 40144, 401),
    ("clientId not a string", forge(HEADER, claims(**{"x-ably-clientId": 123})), 40012, 400),
    ("clientId empty", forge(HEADER, claims(**{"x-ably-clientId": ""})), 40012, 400),
    ("revocation key not a string", forge(HEADER, claims(**{"x-ably-revocation-key": 7})), 40144, 401),
    ("oversized JWT", OVERSIZED, 40144, 401),
    ("oversized opaque token", "x" * 9000, 40145, 401),
    # Not a token at all: 40101, which clients do not renew (ably-spec 8.2, RSA4; ably-js auth.test.js).
    ("two segments", "eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjF9", 40101, 401),
    ("not base64url", "eyJ!.eyJ.sig", 40101, 401),
    ("header not JSON", f"{_b64(b'nope')}.{_b64(b'{}')}.sig", 40101, 401),
    ("header a JSON array", f"{_b64(b'[1]')}.{_b64(b'{}')}.sig", 40101, 401),
    ("unknown opaque token", "sbxtok_never-issued", 40101, 401),
    ("invalid-token", "invalid-token", 40101, 401),
    ("a made-up Ably token", "Sdnurv_some_invalid_token_nkds9r7", 40101, 401),
    ("empty token", "", 40101, 401),
]


@pytest.mark.parametrize(("token", "code", "status"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_token_is_rejected_with_ablys_code(token: str, code: int, status: int) -> None:
    judge, _, _ = make_judge()
    with pytest.raises(AuthServerError) as caught:
        judge.judge(token, now_ms=NOW_MS)
    assert (caught.value.code, caught.value.status) == (code, status)
    assert token[:20] not in caught.value.message or not token


def test_capability_outside_the_key_is_rejected_40160() -> None:
    judge, _, _ = make_judge(key_capabilities={KEY.name: Capability.parse('{"chat:*":["subscribe"]}')})
    token = forge(HEADER, claims(**{"x-ably-capability": '{"admin":["*"]}'}))
    with pytest.raises(AuthServerError) as caught:
        judge.judge(token, now_ms=NOW_MS)
    assert caught.value.code == 40160


def test_opaque_token_is_judged_from_what_was_issued() -> None:
    judge, issued, _ = make_judge()
    grant = JudgedCredential("token", KEY.name, Capability.all(), "user-1", NOW_MS, NOW_MS + 5000)
    token = issued.add(grant, now_ms=NOW_MS)
    assert judge.judge(token, now_ms=NOW_MS + 4999) == grant
    with pytest.raises(AuthServerError) as caught:
        judge.judge(token, now_ms=NOW_MS + 5000)
    assert caught.value.code == 40142


class TestRevocation:
    def revoke(self, revocations: Revocations, target: str, *, before_ms: int, applies_at_ms: int) -> None:
        revocations.add(Revocation(KEY.name, RevocationTarget.parse(target), before_ms, applies_at_ms), now_ms=NOW_MS)

    def test_tokens_issued_before_the_revocation_are_refused_40141(self) -> None:
        judge, _, revocations = make_judge()
        token = forge(HEADER, claims(iat=NOW - 10))
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS, applies_at_ms=NOW_MS)
        with pytest.raises(AuthServerError) as caught:
            judge.judge(token, now_ms=NOW_MS)
        assert caught.value.code == 40141

    def test_tokens_issued_later_or_for_others_are_accepted(self) -> None:
        judge, _, revocations = make_judge()
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS - 5000, applies_at_ms=NOW_MS - 5000)
        assert judge.judge(forge(HEADER, claims(iat=NOW - 2)), now_ms=NOW_MS).client_id == "user-1"
        other = forge(HEADER, claims(iat=NOW - 10, **{"x-ably-clientId": "user-2"}))
        assert judge.judge(other, now_ms=NOW_MS).client_id == "user-2"

    def test_a_jwt_from_the_revocations_own_second_counts_as_later(self) -> None:
        judge, _, revocations = make_judge()
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS + 700, applies_at_ms=NOW_MS)
        assert judge.judge(forge(HEADER, claims(iat=NOW)), now_ms=NOW_MS + 800).client_id == "user-1"

    def test_revocation_key_target_matches_the_claim(self) -> None:
        judge, _, revocations = make_judge()
        self.revoke(revocations, "revocationKey:group-a", before_ms=NOW_MS, applies_at_ms=NOW_MS)
        token = forge(HEADER, claims(**{"x-ably-revocation-key": "group-a"}))
        with pytest.raises(AuthServerError) as caught:
            judge.judge(token, now_ms=NOW_MS)
        assert caught.value.code == 40141

    def test_with_a_reauth_margin_the_token_works_until_the_margin_ends(self) -> None:
        judge, _, revocations = make_judge()
        token = forge(HEADER, claims())
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS, applies_at_ms=NOW_MS + 30_000)
        assert judge.judge(token, now_ms=NOW_MS + 29_999).client_id == "user-1"
        with pytest.raises(AuthServerError):
            judge.judge(token, now_ms=NOW_MS + 30_000)

    def test_each_revocation_of_a_target_is_its_own_rule(self) -> None:
        """Ably revocation docs / ``TokenRevocationSuccessResult``: a later call adds a rule with its own
        ``issuedBefore`` and ``appliesAt``; it never pulls an earlier rule's ``appliesAt`` onto its own cut-off."""
        judge, _, revocations = make_judge()
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS - 20_000, applies_at_ms=NOW_MS - 20_000)
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS, applies_at_ms=NOW_MS + 30_000)
        renewed = forge(HEADER, claims(iat=NOW - 10))  # after the first rule, before the second
        assert judge.judge(renewed, now_ms=NOW_MS + 29_999).client_id == "user-1"
        with pytest.raises(AuthServerError) as caught:
            judge.judge(renewed, now_ms=NOW_MS + 30_000)
        assert caught.value.code == 40141
        with pytest.raises(AuthServerError):  # the first rule still holds for what it covers
            judge.judge(forge(HEADER, claims(iat=NOW - 30)), now_ms=NOW_MS)

    def test_a_later_immediate_revocation_does_not_wait_for_an_earlier_margin(self) -> None:
        judge, _, revocations = make_judge()
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS - 5000, applies_at_ms=NOW_MS + 25_000)
        self.revoke(revocations, "clientId:user-1", before_ms=NOW_MS, applies_at_ms=NOW_MS)
        with pytest.raises(AuthServerError):
            judge.judge(forge(HEADER, claims(iat=NOW - 2)), now_ms=NOW_MS)

    @pytest.mark.parametrize("target", ["channel:x", "clientId:", "nonsense", 7])
    def test_unsupported_targets_are_refused(self, target: object) -> None:
        with pytest.raises(AuthServerError) as caught:
            RevocationTarget.parse(target)
        assert caught.value.code == 40000


class TestEmbeddedToken:
    """An app's own JWT carrying an Ably token in ``x-ably-token`` (Ably JWT docs "Embedded token")."""

    APP_HEADER = {"alg": "HS256", "typ": "JWT"}

    def outer(self, inner: str, *, exp: float, in_claims: bool = False) -> str:
        # Signed with the app's own secret, which Ably (and the sandbox) does not know.
        if in_claims:
            return forge(self.APP_HEADER, {"exp": exp, "x-ably-token": inner, "sub": "app-user"}, secret="app-only")
        return forge({**self.APP_HEADER, "x-ably-token": inner}, {"exp": exp, "sub": "app-user"}, secret="app-only")

    @pytest.mark.parametrize("in_claims", [False, True], ids=["JOSE header", "claim"])
    def test_an_embedded_ably_jwt_is_judged_and_grants_what_it_carries(self, in_claims: bool) -> None:
        judge = make_judge()[0]
        inner = forge(HEADER, claims())
        grant = judge.judge(self.outer(inner, exp=NOW + 600, in_claims=in_claims), now_ms=NOW_MS)
        assert grant == judge.judge(inner, now_ms=NOW_MS)

    def test_an_embedded_opaque_token_is_accepted(self) -> None:
        judge, issued, _ = make_judge()
        grant = JudgedCredential("token", KEY.name, Capability.all(), "user-1", NOW_MS, NOW_MS + 60_000)
        inner = issued.add(grant, now_ms=NOW_MS)
        assert judge.judge(self.outer(inner, exp=NOW + 30), now_ms=NOW_MS) == grant

    def test_an_outer_exp_later_than_the_inner_expiry_is_refused(self) -> None:
        inner = forge(HEADER, claims(exp=NOW + 60))
        with pytest.raises(AuthServerError) as caught:
            make_judge()[0].judge(self.outer(inner, exp=NOW + 61), now_ms=NOW_MS)
        assert caught.value.code == 40144

    @pytest.mark.parametrize(
        ("header_token", "outer_claims"),
        [(5, {"exp": NOW + 30}), ("", {"exp": NOW + 30}), (["a.b.c"], {"exp": NOW + 30}), (None, {"sub": "no exp"})],
        ids=["a number", "empty", "a list", "outer exp missing"],
    )
    def test_an_unusable_embedding_is_an_invalid_jwt_40144(
        self, header_token: object, outer_claims: dict[str, Any]
    ) -> None:
        # The judge.py table: x-ably-token that is not a non-empty string, or an outer JWT without exp.
        judge = make_judge()[0]
        inner = forge(HEADER, claims())
        embedded = inner if header_token is None else header_token
        token = forge({**self.APP_HEADER, "x-ably-token": embedded}, outer_claims, secret="app-only")
        with pytest.raises(AuthServerError) as caught:
            judge.judge(token, now_ms=NOW_MS)
        assert (caught.value.code, caught.value.status) == (40144, 401)

    def test_a_bad_inner_token_keeps_its_own_code(self) -> None:
        judge = make_judge()[0]
        expired = forge(HEADER, claims(iat=NOW - 120, exp=NOW - 60))
        forged = forge(HEADER, claims(), secret="not-the-key")
        codes = []
        for inner in (expired, forged, "invalid-token"):
            with pytest.raises(AuthServerError) as caught:
                judge.judge(self.outer(inner, exp=NOW - 61), now_ms=NOW_MS)
            codes.append(caught.value.code)
        assert codes == [40142, 40101, 40101]
