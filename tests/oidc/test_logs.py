"""The last line of defence of the log handler also scrubs OAuth secrets."""

from __future__ import annotations

import pytest

from authserver.infra.logs import redact


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /login/oidc/callback?code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj", "SplxlOBeZQQYbYS6WxSbIA"),
        (
            "Using code_verifier: 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        ),
        ("POST /token grant_type=x&subject_token=opaque-token-value", "opaque-token-value"),
        ("data: {'code_verifier': 'verifier-value-123'}", "verifier-value-123"),
    ],
)
def test_oauth_secrets_are_scrubbed_from_log_lines(line: str, secret: str) -> None:
    assert secret not in redact(line)
