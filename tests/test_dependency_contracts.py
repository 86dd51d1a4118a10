"""What authserver takes from its frameworks beyond their documented API, checked by name, so that an
upgrade which moves it fails here with a sentence saying what moved and where we lean on it, instead
of a hardening property or a fast path quietly going away.

The behaviour itself is specified elsewhere (tests/server/test_guard.py drives the connection guard
over real sockets; tests/http/test_edge.py and tests/http/test_routes.py the fast paths). These checks name the
cause when those would fail, and they also fail where a change would not show in a test at all (a
method the guard overrides that uvicorn no longer calls). See docs/dependencies.md.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from importlib import metadata
from typing import Any

import pytest
import starlette
import uvicorn
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http import httptools_impl

from authserver.http.responses import PreparedResponse
from authserver.server.guard import GuardedProtocol

GUARD = "authserver/server/guard.py (GuardedProtocol, HeadWithBody)"
EDGE = "authserver/http/responses.py (PreparedResponse) and authserver/http/edge.py (direct)"


def declared_range(distribution: str) -> SpecifierSet:
    """The version range pyproject.toml declares for ``distribution``, as the installed metadata says."""
    for line in metadata.requires("authserver") or []:
        requirement = Requirement(line)
        if requirement.name == distribution and requirement.marker is None:
            return requirement.specifier
    raise AssertionError(f"pyproject.toml declares no {distribution}")


@pytest.mark.parametrize(("distribution", "relied_on"), [("uvicorn", GUARD), ("starlette", EDGE)])
def test_the_framework_is_a_version_the_internals_were_checked_against(distribution: str, relied_on: str) -> None:
    installed = Version(metadata.version(distribution))
    allowed = declared_range(distribution)
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in allowed), (
        f"pyproject.toml must keep an upper bound on {distribution}: {relied_on} leans on its internals"
    )
    assert installed in allowed, (
        f"{distribution} {installed} is outside {allowed}, the range {relied_on} was checked against: "
        "run this file, then widen the bound in pyproject.toml"
    )


# --- uvicorn: the protocol class the connection guard extends --------------------------------------

#: Each method GuardedProtocol overrides, with the parameters uvicorn calls it with.
OVERRIDDEN = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
    "send_400_response": ["self", "msg"],
    "handle_websocket_upgrade": ["self"],
}


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def changed(what: str) -> str:
    return (
        f"uvicorn {uvicorn.__version__} changed the protocol class the connection guard extends ({what}); see {GUARD}"
    )


def test_the_guard_still_extends_uvicorns_httptools_protocol() -> None:
    assert issubclass(GuardedProtocol, httptools_impl.HttpToolsProtocol), changed("no longer its base class")


@pytest.mark.parametrize(("method", "expected"), OVERRIDDEN.items(), ids=list(OVERRIDDEN))
def test_uvicorn_still_calls_each_hook_the_guard_overrides(method: str, expected: list[str]) -> None:
    base = getattr(httptools_impl.HttpToolsProtocol, method, None)
    assert base is not None, changed(f"HttpToolsProtocol.{method} is gone, so the guard's override is never called")
    assert parameters(base) == expected, changed(f"HttpToolsProtocol.{method}{inspect.signature(base)}")
    assert method in vars(GuardedProtocol), f"{GUARD} no longer overrides {method}: update OVERRIDDEN here"


@pytest.mark.parametrize(
    ("owner", "attributes"),
    [
        # what the guard reads and replaces on the protocol (the request line and headers it measures)
        (httptools_impl.HttpToolsProtocol, ("self.cycle", "self.transport", "self.loop", "self.url", "self.headers")),
        # what HeadWithBody reads from the cycle, and the transport it replaces
        (
            httptools_impl.RequestResponseCycle,
            (
                "self.transport",
                "self.scope",
                "self.response_started",
                "self.response_complete",
                "self.chunked_encoding",
                "self.expected_content_length",
            ),
        ),
    ],
    ids=["HttpToolsProtocol", "RequestResponseCycle"],
)
def test_the_attributes_the_guard_reads_are_still_set(owner: type, attributes: tuple[str, ...]) -> None:
    source = inspect.getsource(owner)
    missing = [name for name in attributes if f"{name} =" not in source and f"{name}: " not in source]
    assert not missing, changed(f"{owner.__name__} no longer sets {', '.join(missing)}")


def test_the_protocol_still_collects_the_whole_request_line_and_headers_before_on_headers_complete() -> None:
    # The guard measures the header size from self.url and self.headers once they are complete.
    assert "self.url += url" in inspect.getsource(httptools_impl.HttpToolsProtocol.on_url), changed("on_url")
    assert "self.headers.append((name, value))" in inspect.getsource(httptools_impl.HttpToolsProtocol.on_header), (
        changed("on_header")
    )


def test_the_cycle_still_ends_through_the_protocols_on_response_complete() -> None:
    # Admission control gives a request's place back in on_response_complete, which the cycle calls.
    init = inspect.getsource(httptools_impl.HttpToolsProtocol.on_headers_complete)
    assert "on_response=self.on_response_complete" in init, changed("the cycle's on_response callback")


def test_the_cycle_still_writes_through_its_own_transport_attribute() -> None:
    # HeadWithBody works by replacing cycle.transport: every write of the response must go through it.
    send = inspect.getsource(httptools_impl.RequestResponseCycle.send)
    assert "self.transport.write(" in send, changed("RequestResponseCycle.send no longer writes to self.transport")
    assert "self.transport.write(" not in inspect.getsource(httptools_impl.HttpToolsProtocol.on_headers_complete), (
        changed("the protocol writes the response itself")
    )


def test_a_uvicorn_config_still_takes_a_protocol_class_by_import_string() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    config = uvicorn.Config(app, http="authserver.server.guard:GuardedProtocol", lifespan="off")
    config.load()
    assert config.http_protocol_class is GuardedProtocol, changed("Config(http=...) no longer loads the class named")


# --- starlette: the response internals of the fast paths -------------------------------------------


async def collect(app: Callable[..., Any], scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def test_a_prepared_response_is_sent_by_starlettes_own_call() -> None:
    # PreparedResponse skips Response.__init__ and sets status_code, body, raw_headers and background
    # itself: starlette's __call__ must still send exactly those.
    import anyio

    scope = {"type": "http", "method": "GET", "path": "/auth", "headers": []}
    sent = anyio.run(collect, PreparedResponse('{"a":1}', "application/json"), scope)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"], (
        f"starlette {starlette.__version__} changed how Response sends itself; see {EDGE}"
    )
    assert sent[0]["status"] == 200 and (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"a":1}'


def test_response_call_reads_only_what_a_prepared_response_sets() -> None:
    read = set(re.findall(r"self\.(\w+)", inspect.getsource(Response.__call__)))
    known = {"status_code", "raw_headers", "body", "background", "headers"}
    # ``headers`` is a property over raw_headers; anything else read here would be unset on a PreparedResponse.
    unknown = sorted(name for name in read - known if not hasattr(Response, name))  # methods are the class's
    assert not unknown, (
        f"starlette {starlette.__version__}'s Response.__call__ now reads {unknown}, "
        f"which PreparedResponse does not set; see {EDGE}"
    )


def test_a_route_still_exposes_its_endpoint() -> None:
    async def endpoint(request: Any) -> Response:
        return Response()

    assert Route("/x", endpoint).endpoint is endpoint, (
        f"starlette {starlette.__version__}'s Route no longer keeps .endpoint; see {EDGE}"
    )
