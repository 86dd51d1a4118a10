"""The admin API as a test calls it (importable as ``admin_api``): every call is checked against the
OpenAPI document the service itself serves (the status documented for the operation, the body valid
against the documented schema), and :func:`every_operation` runs each operation once, for the tests
of each kind of credential."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2  # the responses of Starlette's TestClient
from openapi_schema_validator import OAS31Validator
from starlette.testclient import TestClient

PREFIX = "/admin/v1"
PASSWORD = "correct horse battery"


@dataclass
class AdminClient:
    """Calls ``/admin/v1`` with ``headers``, each answer checked against the served document."""

    client: TestClient
    headers: dict[str, str]
    document: dict[str, Any] = field(default_factory=dict)
    #: (method, path template) of every documented operation this client called, with each status seen.
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.document:
            response = self.client.get(f"{PREFIX}/openapi.json")
            assert response.status_code == 200, response.text
            self.document = response.json()

    def call(self, method: str, template: str, *, expect: int, json: Any = None, **params: str) -> httpx2.Response:
        path = PREFIX + template.format(**params)
        response = self.client.request(method, path, json=json, headers=self.headers)
        assert response.status_code == expect, (method, path, response.status_code, response.text)
        self.check(method, PREFIX + template, response)
        return response

    def check(self, method: str, template: str, response: httpx2.Response) -> None:
        """``response`` is what the document says ``method template`` answers with its status."""
        operation = self.document["paths"][template][method.lower()]
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{method} {template} answered {response.status_code}, undocumented"
        self.seen.add((method, template, response.status_code))
        if "$ref" in documented:
            documented = self.resolve(documented["$ref"])
        content = documented.get("content")
        if content is None:
            assert response.content == b"", response.content
            return
        media = response.headers["content-type"].split(";")[0]
        assert media in content, (media, list(content))
        schema = {**content[media]["schema"], "components": self.document["components"]}
        OAS31Validator(schema).validate(response.json())

    def resolve(self, ref: str) -> dict[str, Any]:
        node: Any = self.document
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        return dict(node)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def every_operation(admin: AdminClient, *, revocation: bool, now: float | None = None) -> None:
    """Each operation of the admin API once, as a support tool would use them, and what each answers
    (``now``: the service's clock, for a revocation's ``issuedBefore`` a minute ago)."""
    name = unique("ann")
    body = {"username": name, "password": PASSWORD, "role": "user", "clientId": f"{name}-cid"}
    created = admin.call("POST", "/users", json=body, expect=201).json()
    assert created == {"username": name, "clientId": f"{name}-cid", "role": "user", "disabled": False}
    assert name in [user["username"] for user in admin.call("GET", "/users", expect=200).json()["users"]]
    assert admin.call("GET", "/users/{username}", username=name, expect=200).json() == created
    role = admin.call("PUT", "/users/{username}/role", username=name, json={"role": "admin"}, expect=200).json()
    assert role["role"] == "admin"
    assert admin.call("POST", "/users/{username}/disable", username=name, expect=200).json()["disabled"] is True
    assert admin.call("POST", "/users/{username}/enable", username=name, expect=200).json()["disabled"] is False
    login = admin.client.post("/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    admin.client.cookies.clear()  # the admin calls go on without the user's session
    sessions = admin.call("GET", "/users/{username}/sessions", username=name, expect=200).json()["sessions"]
    assert [(s["clientId"], s["role"], s["source"], s["id"][:2]) for s in sessions] == [
        (f"{name}-cid", "admin", "account", "s:")
    ]
    admin.call("PUT", "/users/{username}/password", username=name, json={"password": "new " + PASSWORD}, expect=204)
    assert admin.call("GET", "/users/{username}/sessions", username=name, expect=200).json() == {"sessions": []}
    assert admin.client.post("/login", json={"username": name, "password": "new " + PASSWORD}).status_code == 200
    admin.client.cookies.clear()
    admin.call("DELETE", "/users/{username}/sessions", username=name, expect=204)
    assert admin.call("GET", "/users/{username}/sessions", username=name, expect=200).json() == {"sessions": []}
    issued_before = int(((time.time() if now is None else now) - 60) * 1000)
    revoke = {"targets": [f"user:{name}", "clientId:someone"], "issuedBefore": issued_before}
    if revocation:
        done = admin.call("POST", "/revocations", json=revoke, expect=202).json()
        assert done == {
            "targets": [f"clientId:{name}-cid", "clientId:someone"],
            "queued": 2,
            "issuedBefore": issued_before,
            "allowReauthMargin": False,
        }
    else:
        assert "revocation is off" in admin.call("POST", "/revocations", json=revoke, expect=400).json()["detail"]
    outbox = admin.call("GET", "/revocations/outbox", expect=200).json()
    assert outbox["revocation"] is revocation
    assert (outbox["pending"] > 0) is revocation
    admin.call("DELETE", "/users/{username}", username=name, expect=204)
    admin.call("GET", "/users/{username}", username=name, expect=404)
