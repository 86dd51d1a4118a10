"""Responses in Ably's shapes (responses.py): compact JSON, the no-cache headers, the error body with
X-Ably-Errorcode/X-Ably-Errormessage, and the prebuilt response of the hot path, served by a real app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from authserver.errors import (
    AuthServerError,
    ClientIdError,
    ForbiddenError,
    LoggedOutElsewhereError,
    NotAuthenticatedError,
    RateLimitedError,
    UnavailableError,
)
from authserver.http.responses import (
    NO_CACHE,
    PreparedResponse,
    error_body,
    error_response,
    exception_response,
    json_response,
)


def serve(response: Response) -> TestClient:
    """The smallest app answering ``response`` on GET /."""

    async def endpoint(request: Request) -> Response:
        return response

    return TestClient(Starlette(routes=[Route("/", endpoint)]))


def body_of(response: Response) -> Any:
    return json.loads(bytes(response.body))


def test_the_no_cache_headers_are_the_ones_every_auth_answer_must_carry() -> None:
    assert NO_CACHE == {
        "Cache-Control": "private, no-cache, no-store, must-revalidate",
        "Pragma": "no-cache",
        "Expires": "0",
    }


def test_a_json_response_is_compact_json_with_the_no_cache_headers() -> None:
    response = json_response({"a": [1, 2], "b": "ü"})
    assert response.body == b'{"a":[1,2],"b":"\\u00fc"}'
    assert response.status_code == 200
    assert response.media_type == "application/json"
    for name, value in NO_CACHE.items():
        assert response.headers[name] == value


def test_a_json_response_takes_a_status_and_extra_headers_beside_the_no_cache_ones() -> None:
    response = json_response({"ok": True}, 201, {"X-Extra": "1"})
    assert response.status_code == 201
    assert response.headers["x-extra"] == "1"
    assert response.headers["cache-control"] == NO_CACHE["Cache-Control"]


def test_the_error_body_is_ablys_shape_with_a_help_link() -> None:
    assert error_body(40160, 403, "not allowed") == {
        "error": {
            "message": "not allowed",
            "code": 40160,
            "statusCode": 403,
            "href": "https://help.ably.io/error/40160",
        }
    }


def test_an_error_response_carries_the_code_and_message_in_headers_and_body() -> None:
    response = serve(error_response(40102, 403, "clientId mismatch")).get("/")
    assert response.status_code == 403
    assert response.headers["x-ably-errorcode"] == "40102"
    assert response.headers["x-ably-errormessage"] == "clientId mismatch"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["pragma"] == "no-cache" and response.headers["expires"] == "0"
    assert response.json() == error_body(40102, 403, "clientId mismatch")


@pytest.mark.parametrize(
    ("message", "header"),
    [
        ("line one\r\nX-Injected: yes", "line one??X-Injected: yes"),
        ("clientId «bob» refused", "clientId ?bob? refused"),
        ("tab\there\x00", "tab?here?"),
        ("plain ASCII ~ stays", "plain ASCII ~ stays"),
    ],
)
def test_the_message_header_holds_printable_ascii_only_while_the_body_keeps_the_message(
    message: str, header: str
) -> None:
    response = error_response(40000, 400, message)
    assert response.headers["x-ably-errormessage"] == header
    assert body_of(response)["error"]["message"] == message


def test_the_message_header_is_cut_to_200_characters_but_the_body_is_not() -> None:
    message = "m" * 500
    response = error_response(40000, 400, message)
    assert response.headers["x-ably-errormessage"] == "m" * 200
    assert body_of(response)["error"]["message"] == message


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (ClientIdError("clientId must not be empty"), 400, 40012),
        (NotAuthenticatedError("not logged in"), 401, 40101),
        (ForbiddenError("requested capability is not allowed", code=40160), 403, 40160),
        (LoggedOutElsewhereError("you logged out everywhere"), 403, 40301),
        (RateLimitedError("too many"), 429, 42910),
        (UnavailableError("database busy"), 503, 50300),
        (AuthServerError("boom"), 500, 50000),
    ],
)
def test_an_exception_becomes_the_error_response_of_its_code_and_status(
    error: AuthServerError, status: int, code: int
) -> None:
    response = exception_response(error)
    assert response.status_code == status
    assert response.headers["x-ably-errorcode"] == str(code)
    assert body_of(response) == error_body(code, status, error.message)


def test_a_prepared_response_is_served_as_is_with_the_no_cache_headers() -> None:
    body = '{"token":"a.b.c","clientId":"üser"}'
    response = serve(PreparedResponse(body, "application/json")).get("/")
    assert response.status_code == 200
    assert response.text == body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(body.encode("utf-8")))  # bytes, not characters
    for name, value in NO_CACHE.items():
        assert response.headers[name] == value


def test_a_prepared_response_sends_each_header_once() -> None:
    response = PreparedResponse("a.b.c", "application/jwt")
    names = [name for name, _ in response.raw_headers]
    assert sorted(names) == sorted([b"content-length", b"content-type", b"cache-control", b"pragma", b"expires"])
    assert dict(response.raw_headers)[b"content-type"] == b"application/jwt"


def test_two_prepared_responses_do_not_share_their_header_list() -> None:
    first, second = PreparedResponse("one", "application/jwt"), PreparedResponse("second", "application/json")
    first.raw_headers.append((b"x-extra", b"1"))
    assert (b"x-extra", b"1") not in second.raw_headers
    assert dict(second.raw_headers)[b"content-length"] == b"6"
