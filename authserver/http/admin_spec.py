"""The admin API's operations, written once: the routes of :mod:`authserver.http.admin` are built from
:data:`OPERATIONS`, their request bodies parsed by the same :class:`Body` specs, and the OpenAPI 3.1
document (``GET /admin/v1/openapi.json``) made from them (:func:`openapi_document`).

Request bodies are JSON objects of known fields: an unknown field is refused (400) rather than
ignored, so that a misspelt field never silently does nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from authserver.errors import BadRequestError
from authserver.identity.passwords import MAX_PASSWORD_LENGTH

PREFIX = "/admin/v1"
PROBLEM_TYPE = "application/problem+json"
#: The longest string any field takes (passwords: at most MAX_PASSWORD_LENGTH bytes, checked after).
MAX_STRING = MAX_PASSWORD_LENGTH
MAX_TARGETS = 100
#: The largest integer a body takes: the largest JSON numbers keep exactly (JavaScript's safe integers).
MAX_INTEGER = 2**53 - 1
#: Ably's codes for a body that is not what was expected, a field it does not know, a value of the wrong kind.
INVALID_BODY, UNKNOWN_FIELD, INVALID_VALUE = 40001, 40002, 40003


@dataclass(frozen=True)
class Field:
    """One field of a request body: ``kind`` is ``string``, ``integer``, ``boolean`` or ``strings``."""

    kind: str
    description: str
    required: bool = False
    #: An integer's schema beyond its bounds (a static document cannot say "now").
    extra: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        if self.kind == "string":
            return {"type": "string", "minLength": 1, "maxLength": MAX_STRING, "description": self.description}
        if self.kind == "strings":
            item = {"type": "string", "minLength": 1, "maxLength": MAX_STRING}
            return {
                "type": "array",
                "items": item,
                "minItems": 1,
                "maxItems": MAX_TARGETS,
                "description": self.description,
            }
        if self.kind == "integer":
            return {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_INTEGER,
                "description": self.description,
            } | self.extra
        return {"type": "boolean", "description": self.description}

    def check(self, name: str, value: Any) -> Any:
        """``value`` when it is of this field's kind. :raises BadRequestError: naming the field."""
        if self.kind == "string" and isinstance(value, str) and 0 < len(value) <= MAX_STRING:
            return _utf8(name, value)
        if (
            self.kind == "integer"
            and isinstance(value, int)
            and not isinstance(value, bool)
            and 0 <= value <= MAX_INTEGER
        ):
            return value
        if self.kind == "boolean" and isinstance(value, bool):
            return value
        if self.kind == "strings" and isinstance(value, list) and 0 < len(value) <= MAX_TARGETS:
            if all(isinstance(item, str) and 0 < len(item) <= MAX_STRING for item in value):
                return [_utf8(name, item) for item in value]
        raise BadRequestError(f"field {name!r} must be {_KIND_TEXT[self.kind]}", code=INVALID_VALUE)


def _utf8(name: str, value: str) -> str:
    """JSON may carry lone surrogates (``"\\ud800"``), which are no text: refused like a wrong type."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequestError(f"field {name!r} is not valid Unicode text", code=INVALID_VALUE) from None
    return value


_KIND_TEXT = {
    "string": f"a non-empty string of at most {MAX_STRING} characters",
    "integer": f"a non-negative integer of at most {MAX_INTEGER}",
    "boolean": "true or false",
    "strings": f"a list of 1 to {MAX_TARGETS} non-empty strings",
}


@dataclass(frozen=True)
class Body:
    """A request body: a JSON object with these fields (``name`` names its schema in the document)."""

    name: str
    fields: dict[str, Field]

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {name: f.schema() for name, f in self.fields.items()},
            "required": [name for name, f in self.fields.items() if f.required],
            "additionalProperties": False,
        }

    def parse(self, raw: bytes) -> dict[str, Any]:
        """The fields of ``raw`` (checked). :raises BadRequestError: not JSON, not an object, unknown,
        missing or mistyped fields (every one named)."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadRequestError("request body is not valid JSON", code=INVALID_BODY) from None
        if not isinstance(data, dict):
            raise BadRequestError("request body must be a JSON object", code=INVALID_BODY)
        unknown = sorted(name[:40] for name in data if name not in self.fields)
        if unknown:
            raise BadRequestError(
                f"unknown field(s): {', '.join(map(repr, unknown))} (known: {', '.join(self.fields)})",
                code=UNKNOWN_FIELD,
            )
        missing = [name for name, f in self.fields.items() if f.required and name not in data]
        if missing:
            raise BadRequestError(f"missing field(s): {', '.join(map(repr, missing))}", code=INVALID_BODY)
        return {name: self.fields[name].check(name, value) for name, value in data.items()}


@dataclass(frozen=True)
class Operation:
    """One operation: ``responses`` maps a success status to its schema name (None: no body)."""

    method: str
    path: str
    operation_id: str
    summary: str
    responses: dict[int, str | None]
    body: Body | None = None
    #: The refusals it can answer besides 401/403/429/503 (which every authenticated operation can).
    problems: tuple[int, ...] = ()
    public: bool = False
    tags: tuple[str, ...] = field(default=("admin",))


_USER_PATH = PREFIX + "/users/{username}"
CREATE_USER = Body(
    "CreateUser",
    {
        "username": Field("string", "the account's name (the clientId safe set)", required=True),
        "password": Field("string", "its password (never logged)", required=True),
        "role": Field("string", "a policy role (default: the policy's default_role)"),
        "clientId": Field("string", "its Ably clientId (default: the username)"),
    },
)
SET_ROLE = Body("SetRole", {"role": Field("string", "a policy role", required=True)})
SET_PASSWORD = Body("SetPassword", {"password": Field("string", "the new password (never logged)", required=True)})
REVOKE = Body(
    "Revoke",
    {
        "targets": Field(
            "strings", "user:NAME, clientId:ID, session:KEY (s:... or a stored id hash) or revocationKey:KEY", True
        ),
        "issuedBefore": Field(
            "integer",
            "only tokens issued before this time, ms since the epoch (default: now). As Ably requires, not in"
            " the future and at most an hour ago: between now - 59 minutes (a minute is kept for the delivery)"
            " and now; up to a minute ahead counts as now. Anything else is 400 (40003).",
            extra={"format": "int64", "examples": [1_800_000_000_000]},
        ),
        "allowReauthMargin": Field("boolean", "Ably's grace: connected clients are asked to renew first"),
    },
)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", PREFIX + "/openapi.json", "getOpenApi", "This document", {200: None}, public=True),
    Operation("GET", PREFIX + "/users", "listUsers", "List accounts", {200: "UserList"}),
    Operation(
        "POST", PREFIX + "/users", "createUser", "Add an account", {201: "User"}, CREATE_USER, (400, 409, 413, 415)
    ),
    Operation("GET", _USER_PATH, "getUser", "Show an account", {200: "User"}, problems=(404,)),
    Operation(
        "DELETE", _USER_PATH, "removeUser", "Remove an account (ends its sessions)", {204: None}, problems=(404,)
    ),
    Operation("POST", _USER_PATH + "/disable", "disableUser", "Disable an account", {200: "User"}, problems=(404,)),
    Operation("POST", _USER_PATH + "/enable", "enableUser", "Enable an account", {200: "User"}, problems=(404,)),
    Operation(
        "PUT", _USER_PATH + "/role", "setRole", "Set an account's role", {200: "User"}, SET_ROLE, (400, 404, 413, 415)
    ),
    Operation(
        "PUT",
        _USER_PATH + "/password",
        "setPassword",
        "Change a password (ends the account's sessions)",
        {204: None},
        SET_PASSWORD,
        (400, 404, 413, 415),
    ),
    Operation(
        "GET",
        _USER_PATH + "/sessions",
        "listSessions",
        "An account's live sessions",
        {200: "SessionList"},
        problems=(404,),
    ),
    Operation(
        "DELETE",
        _USER_PATH + "/sessions",
        "endSessions",
        "Log an account out everywhere (and revoke its tokens)",
        {204: None},
        problems=(404,),
    ),
    Operation(
        "POST",
        PREFIX + "/revocations",
        "revokeTokens",
        "Revoke tokens by user, clientId or session",
        {202: "Revocation"},
        REVOKE,
        (400, 404, 409, 413, 415),
    ),
    Operation("GET", PREFIX + "/revocations/outbox", "getOutbox", "The revocation outbox's state", {200: "Outbox"}),
)


def _object(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


_INT = {"type": "integer"}
_STR = {"type": "string"}
_MS_OR_NULL = {"type": ["integer", "null"], "description": "ms since the epoch"}

RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "User": _object({"username": _STR, "clientId": _STR, "role": _STR, "disabled": {"type": "boolean"}}),
    "UserList": _object({"users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}}}),
    "Session": _object(
        {
            "id": {**_STR, "description": "the session's revocation key (revoke it with session:ID)"},
            "clientId": _STR,
            "role": _STR,
            "source": _STR,
            "expiresAt": {**_INT, "description": "ms since the epoch"},
        }
    ),
    "SessionList": _object({"sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}}}),
    "Revocation": _object(
        {
            "targets": {"type": "array", "items": _STR, "description": "Ably's targets (clientId:x, revocationKey:x)"},
            "queued": {**_INT, "description": "outbox rows queued: one per target and signing key"},
            "issuedBefore": _MS_OR_NULL,
            "allowReauthMargin": {"type": "boolean"},
        }
    ),
    "Outbox": _object(
        {
            "revocation": {"type": "boolean", "description": "whether this service revokes (ABLY_REVOCABLE_TOKENS)"},
            "pending": _INT,
            "due": _INT,
            "retrying": _INT,
            "oldestQueuedAt": _MS_OR_NULL,
            "maxAttempts": _INT,
        }
    ),
    "Problem": _object(
        {
            "type": _STR,
            "title": _STR,
            "status": _INT,
            "detail": _STR,
            "code": {**_INT, "description": "the Ably error code"},
        },
        ["type", "title", "status", "detail"],
    ),
}

PROBLEM_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, schema in op.responses.items():
        entry: dict[str, Any] = {"description": "OK" if status < 300 else "Accepted"}
        if schema is not None:
            entry["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}
        elif op.public:
            entry["content"] = {"application/json": {"schema": {"type": "object"}}}
        out[str(status)] = entry
    refusals = () if op.public else (401, 403, *op.problems, 429, 503)
    for status in sorted({404, *refusals}):  # 404: the API is off
        out[str(status)] = {"$ref": f"#/components/responses/Problem{status}"}
    return out


def _operation(op: Operation) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": list(op.tags),
        "responses": _responses(op),
    }
    if op.public:
        entry["security"] = []
    if "{username}" in op.path:
        entry["parameters"] = [{"name": "username", "in": "path", "required": True, "schema": _STR}]
    if op.body is not None:
        schema = {"$ref": f"#/components/schemas/{op.body.name}"}
        entry["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    return entry


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`OPERATIONS`."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    schemas = dict(RESPONSE_SCHEMAS)
    for op in OPERATIONS:
        if op.body is not None:
            schemas[op.body.name] = op.body.schema()
    problem = {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "authserver admin API",
            "version": "1",
            "description": "Accounts, sessions and revocations of an authserver (docs/admin-api.md).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an admin API key (asadm_...) or a provider token carrying AUTHSERVER_ADMIN_ROLE",
                }
            },
            "responses": {
                f"Problem{status}": {"description": title, "content": problem}
                for status, title in PROBLEM_TITLES.items()
            },
        },
    }
