"""examples/python-worker (ably-python with ``auth_url``) and examples/node-backend (ably-js with
``authUrl``), each with a demo user's access token from the development provider as a bearer: run as their
READMEs say, they connect to the development sandbox and stay connected across token renewals."""

from __future__ import annotations

import pytest

from .conftest import RENEWALS, REPO, DevStack, install_example

pytestmark = [pytest.mark.node]


def renewal_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("renewed ")]


def test_the_python_worker_stays_connected_across_renewals(dev_stack: DevStack) -> None:
    output = dev_stack.run(
        "ACCESS_TOKEN=$(scripts/idp-token alice)"
        f" .venv/bin/python examples/python-worker/worker.py --renewals {RENEWALS}",
        extra_env={"SERVICE_URL": dev_stack.service},
    )
    assert "connected as alice" in output
    assert "message: worker alice is up" in output
    assert renewal_lines(output) == [f"renewed {n}, still connected" for n in range(1, RENEWALS + 1)]


def test_the_node_backend_stays_connected_across_renewals(dev_stack: DevStack) -> None:
    install_example(REPO / "examples" / "node-backend")
    output = dev_stack.run(
        f"ACCESS_TOKEN=$(scripts/idp-token alice) node examples/node-backend/backend.mjs --renewals {RENEWALS}",
        extra_env={"SERVICE_URL": dev_stack.service},
    )
    assert "connected as alice" in output
    assert "message: backend alice is up" in output
    assert renewal_lines(output) == [f"renewed {n}, still connected" for n in range(1, RENEWALS + 1)]
