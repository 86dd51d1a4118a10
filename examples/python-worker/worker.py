"""A Python worker: ably-python with ``auth_url`` and the user's (or the worker's) access token as a bearer.

    ACCESS_TOKEN=$(scripts/idp-token alice) .venv/bin/python examples/python-worker/worker.py

SERVICE_URL is where authserver is (default http://127.0.0.1:8000). The client renews its Ably token
through ``auth_url`` by itself whenever Ably asks (about 30 s before expiry); ``--renewals N`` stops after N
renewals (the tests use it), otherwise it runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import urllib.request
from typing import Any

from ably import AblyRealtime

# Only for the development sandbox: map GET /client-config's ably-js options to ably-python's (and work
# around ably-python 3.1 ignoring a non-default WebSocket port). Against real Ably there are none.
from authserver.cli.smoke import ably_python_options

SERVICE_URL = os.environ.get("SERVICE_URL", "http://127.0.0.1:8000").rstrip("/")


def sandbox_options() -> dict[str, Any]:
    with urllib.request.urlopen(f"{SERVICE_URL}/client-config", timeout=10) as answer:  # noqa: S310 (http(s) only)
        return ably_python_options(json.load(answer)["clientOptions"])


async def run(access_token: str, renewals: int | None) -> None:
    client = AblyRealtime(
        auth_url=f"{SERVICE_URL}/auth",
        auth_headers={"Authorization": f"Bearer {access_token}"},
        **sandbox_options(),
    )
    try:
        await client.connection.once_async("connected")
        print(f"connected as {client.auth.client_id}", flush=True)
        channel = client.channels.get("chat:worker")
        await channel.subscribe(lambda message: print(f"message: {message.data}", flush=True))
        await channel.publish("status", f"worker {client.auth.client_id} is up")
        token, seen = client.auth.token_details.token, 0
        while renewals is None or seen < renewals:
            await asyncio.sleep(0.5)
            details = client.auth.token_details
            if details is not None and details.token != token:
                token, seen = details.token, seen + 1
                state = getattr(client.connection.state, "value", client.connection.state)
                print(f"renewed {seen}, still {state}", flush=True)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renewals", type=int, help="stop after this many token renewals")
    args = parser.parse_args()
    asyncio.run(run(os.environ["ACCESS_TOKEN"], args.renewals))


if __name__ == "__main__":
    main()
