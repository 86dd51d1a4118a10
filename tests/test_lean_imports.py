"""A worker loads only what its configuration uses (memory per worker): the drivers and clients of
optional features are imported when those features are configured, not at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPTIONAL = frozenset({"psycopg", "psycopg_pool", "redis", "limits", "authlib", "httpx", "jwt", "cryptography"})

PROBE = """
import json, sys
from authserver.http.app import create_app
from authserver.cli import main  # the entry point `authserver serve` runs
from authserver.config import load_settings

settings = load_settings(json.loads(sys.argv[1]), env_file=None)
create_app(settings)
print(json.dumps(sorted({name.partition(".")[0] for name in sys.modules})))
"""


def loaded_by(environment: dict[str, str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(environment)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return set(OPTIONAL & set(json.loads(out)))


def test_a_sqlite_service_without_redis_or_a_provider_loads_none_of_their_clients(tmp_path: Path) -> None:
    loaded = loaded_by(
        {
            "ABLY_API_KEY": "app.key:" + "s" * 40,
            "SESSION_SECRET": "x" * 40,
            "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
            "AUTHSERVER_LOG_FORMAT": "json",
        }
    )
    assert loaded == set(), f"imported without being configured: {sorted(loaded)}"


def test_a_configured_provider_loads_its_http_client_and_jwt_library(tmp_path: Path) -> None:
    loaded = loaded_by(
        {
            "ABLY_API_KEY": "app.key:" + "s" * 40,
            "SESSION_SECRET": "x" * 40,
            "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
            "OIDC_ISSUER": "http://127.0.0.1:9/",
            "OIDC_AUDIENCE": "chat",
        }
    )
    assert {"httpx"} <= loaded
    assert "redis" not in loaded and "psycopg" not in loaded
