"""Who may get what: roles map to capability templates and TTL limits.

A policy file is TOML or JSON::

    default_role = "user"
    demo_role = "demo"
    [roles.user]
    max_ttl = 3600
    [roles.user.capability]
    "chat:*" = ["publish", "subscribe", "presence"]
    "private:{clientId}" = ["*"]
    [roles.user.channel_claims]      # optional: ably.channel.<resource> user claims (see channelclaims.py)
    "chat:*" = '{"role":"user"}'
    [roles.user.publish_rate]        # optional: messages per second per attachment
    "chat:*" = 5

    [[issuers]]                      # optional: trusted OpenID Connect providers (docs/use-from-your-app.md)
    issuer = "https://example.eu.auth0.com/"
    audience = "https://chat.example.com"
    role_claim = "https://chat.example.com/roles"
    role = "user"                    # role when the role claim names none (default: default_role)
    client_id_prefix = "auth0."      # before the claim's value; every trusted issuer but one needs one
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from authserver.core.capabilities import Capability, expand_template
from authserver.core.channelclaims import (
    MAX_JWT_BYTES,
    ChannelClaims,
    ClaimTemplateError,
    parse_channel_claims,
    worst_case_jwt_bytes,
)
from authserver.core.clientids import MAX_CLIENT_ID_CHARS
from authserver.core.issuers import (
    UpstreamConfigError,
    UpstreamIssuer,
    check_distinct_client_ids,
    parse_issuer_table,
)
from authserver.errors import AuthServerError, CapabilityError, ForbiddenError

DEFAULT_POLICY_FILE = Path(__file__).with_name("default_policy.toml")
ROLE_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_PLACEHOLDER_PROBE = "probe"  # a safe clientId used to check that templates expand to valid capabilities


class PolicyError(AuthServerError):
    """A policy file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Role:
    """A role: its capability template, the longest lifetime of its tokens (seconds), and the channel
    claims (user claims, publish rates) its JWTs carry."""

    name: str
    template: Mapping[str, tuple[str, ...]]
    max_ttl: int | None = None
    claims: ChannelClaims = field(default_factory=ChannelClaims)

    def capability_for(self, client_id: str) -> Capability:
        """The role's capability with ``{clientId}`` expanded.

        :raises ClientIdError: if the clientId is outside the safe set.
        """
        return expand_template(self.template, client_id)


@dataclass(frozen=True, slots=True)
class Policy:
    roles: Mapping[str, Role]
    default_role: str
    demo_role: str
    #: Trusted OpenID Connect providers (``[[issuers]]``), besides OIDC_ISSUER from the environment.
    issuers: tuple[UpstreamIssuer, ...] = field(default=())

    def role(self, name: str) -> Role:
        """:raises ForbiddenError: for a role the policy does not define (a final refusal)."""
        try:
            return self.roles[name]
        except KeyError:
            raise ForbiddenError(f"role {name!r} is not defined by the policy") from None


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """Validate decoded policy data.

    :raises PolicyError: naming the role and field at fault.
    """
    if not isinstance(data, Mapping):
        raise PolicyError("policy must be a table/object")
    unknown = set(data) - {"roles", "default_role", "demo_role", "issuers"}
    if unknown:
        raise PolicyError(f"policy has unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    raw_roles = data.get("roles")
    if not isinstance(raw_roles, Mapping) or not raw_roles:
        raise PolicyError("policy has no [roles]")
    roles: dict[str, Role] = {}
    for name, body in raw_roles.items():
        roles[name] = _parse_role(name, body)
    default_role = data.get("default_role", "user")
    demo_role = data.get("demo_role", default_role)
    for field_name, value in (("default_role", default_role), ("demo_role", demo_role)):
        if not isinstance(value, str) or value not in roles:
            raise PolicyError(f"{field_name} {value!r} is not one of the roles")
    return Policy(MappingProxyType(roles), default_role, demo_role, _parse_issuers(data.get("issuers", []), roles))


def _parse_issuers(raw: object, roles: Mapping[str, Role]) -> tuple[UpstreamIssuer, ...]:
    if not isinstance(raw, list):
        raise PolicyError("issuers must be a list of tables ([[issuers]])")
    issuers: list[UpstreamIssuer] = []
    for index, table in enumerate(raw):
        try:
            issuer = parse_issuer_table(table, index)
        except UpstreamConfigError as exc:
            raise PolicyError(str(exc)) from None
        if issuer.role is not None and issuer.role not in roles:
            raise PolicyError(f"issuers[{index}].role {issuer.role!r} is not one of the roles")
        if any(seen.issuer == issuer.issuer for seen in issuers):
            raise PolicyError(f"issuers[{index}]: issuer {issuer.issuer} is listed twice")
        issuers.append(issuer)
    try:
        check_distinct_client_ids(issuers)
    except UpstreamConfigError as exc:
        raise PolicyError(str(exc)) from None
    return tuple(issuers)


def _parse_role(name: object, body: object) -> Role:
    if not isinstance(name, str) or not ROLE_NAME.fullmatch(name):
        raise PolicyError(f"role name {name!r} must be 1-64 letters, digits, '_' or '-'")
    if not isinstance(body, Mapping):
        raise PolicyError(f"role {name!r} must be a table/object")
    unknown = set(body) - {"capability", "max_ttl", "channel_claims", "publish_rate"}
    if unknown:
        raise PolicyError(f"role {name!r} has unknown field(s): {', '.join(sorted(unknown))}")
    template = body.get("capability")
    if not isinstance(template, Mapping) or not template:
        raise PolicyError(f"role {name!r} needs a non-empty capability")
    frozen: dict[str, tuple[str, ...]] = {}
    for resource, ops in template.items():
        if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
            raise PolicyError(f"role {name!r}: capability for {resource!r} must be a list of operations")
        frozen[resource] = tuple(ops)
    try:
        expand_template(frozen, _PLACEHOLDER_PROBE)
        # The longest clientId gives the role's largest capability, for the JWT size check below.
        largest = expand_template(frozen, "x" * MAX_CLIENT_ID_CHARS)
    except CapabilityError as exc:
        raise PolicyError(f"role {name!r}: {exc.message}") from None
    max_ttl = body.get("max_ttl")
    if max_ttl is not None and (not isinstance(max_ttl, int) or isinstance(max_ttl, bool) or max_ttl < 1):
        raise PolicyError(f"role {name!r}: max_ttl must be a positive whole number of seconds")
    try:
        claims = parse_channel_claims(body.get("channel_claims"), body.get("publish_rate"))
    except ClaimTemplateError as exc:
        raise PolicyError(f"role {name!r}: {exc}") from None
    size = worst_case_jwt_bytes(largest.to_json(), claims)
    if size > MAX_JWT_BYTES:
        raise PolicyError(
            f"role {name!r}: its JWTs could be {size} bytes, over Ably's {MAX_JWT_BYTES}-byte guidance "
            "(shorten its capability, channel_claims or publish_rate)"
        )
    return Role(name, MappingProxyType(frozen), max_ttl, claims)


def load_policy(path: Path | None) -> Policy:
    """Read a TOML (``.toml``) or JSON policy file; ``None`` loads the built-in policy.

    :raises PolicyError: if the file is missing, unreadable or invalid.
    """
    source = path or DEFAULT_POLICY_FILE
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {str(source)!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file {str(source)!r} is not UTF-8 (byte {exc.start})") from None
    try:
        data = json.loads(text) if source.suffix.lower() == ".json" else tomllib.loads(text)
    except RecursionError:
        raise PolicyError(f"policy file {str(source)!r} is nested too deeply") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"policy file {str(source)!r} does not parse: {exc}") from None
    return parse_policy(data)
