"""Ably capabilities: parsing, canonical JSON, resource matching and token-capability intersection.

A capability maps resource patterns (``chat:*``, ``[queue]*``, ``[*]*``) to operation lists. The rules
follow the Ably docs (see ``ably-spec.md`` section 3); where Ably's behaviour is unconfirmed this module
takes the choice that grants less.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from authserver.core.clientids import check_client_id
from authserver.errors import CapabilityError

#: Every operation of the current Ably docs (spec 3.3); ``"*"`` in a capability stands for all of them.
OPERATIONS: frozenset[str] = frozenset(
    """subscribe publish presence object-subscribe object-publish annotation-subscribe annotation-publish
    message-update-own message-update-any message-delete-own message-delete-any history stats
    push-subscribe push-admin channel-metadata privileged-headers""".split()
)

ALL_OPS = "*"
MAX_CAPABILITY_CHARS = 16384
MAX_RESOURCE_CHARS = 256
PLACEHOLDER = "{clientId}"
_ECHO_CHARS = 64  # user-supplied text echoed in an error message is cut to this length


_Split = tuple[str | None, list[str]]


def _quote(text: str) -> str:
    """Quote a user-supplied string for an error message: JSON escaping keeps control chars out of logs."""
    return json.dumps(text[:_ECHO_CHARS] + ("..." if len(text) > _ECHO_CHARS else ""))


def _split(resource: str) -> _Split:
    """Split ``[qualifier]rest`` into ``(qualifier, rest segments)``; qualifier is None for plain channels.

    A name starting with ``[`` but lacking ``]`` is not a channel name (those cannot start with ``[``); it is
    treated as an odd qualifier of its own so that unqualified patterns such as ``*`` never match it.
    """
    qualifier: str | None = None
    rest = resource
    if resource.startswith("["):
        close = resource.find("]")
        qualifier, rest = (resource[1:close], resource[close + 1 :]) if close > 0 else (resource, "")
    return qualifier, rest.split(":")


def _segments_match(pattern: list[str], name: list[str]) -> bool:
    # A final '*' matches one or more segments; any other '*' matches exactly one whole segment.
    if pattern[-1] == "*":
        fixed = pattern[:-1]
        if len(name) <= len(fixed):
            return False
    else:
        fixed = pattern
        if len(name) != len(fixed):
            return False
    return all(p == "*" or p == n for p, n in zip(fixed, name, strict=False))


def resource_matches(pattern: str, name: str) -> bool:
    """Whether the capability resource ``pattern`` covers the channel (or qualified resource) ``name``.

    ``*`` matches every channel but no ``[queue]``/``[meta]`` resource; ``[*]*`` matches everything.
    ``foo*`` is a literal; ``namespace:*`` does not match bare ``namespace``.
    """
    p_qual, p_segs = _split(pattern)
    n_qual, n_segs = _split(name)
    if p_qual != "*" and p_qual != n_qual:
        return False
    return _segments_match(p_segs, n_segs)


def _covers(a: _Split, b: _Split) -> bool:
    """Whether pattern ``a`` matches every name pattern ``b`` matches (b is equal to or narrower than a).

    A '*' in ``b`` stands for arbitrary segments, so only a '*' in ``a`` can cover it.
    """
    (a_qual, a_segs), (b_qual, b_segs) = a, b
    if a_qual != "*" and a_qual != b_qual:
        return False
    b_open = b_segs[-1] == "*"  # b matches names of unbounded length
    if a_segs[-1] == "*":
        fixed = a_segs[:-1]
        # b's names must all have more than len(fixed) segments: a trailing '*' in b counts as one.
        if len(b_segs) <= len(fixed):
            return False
    else:
        fixed = a_segs
        if b_open or len(b_segs) != len(fixed):
            return False
    return all(p == "*" or p == s for p, s in zip(fixed, b_segs, strict=False))


def _combine_ops(x: frozenset[str], y: frozenset[str]) -> frozenset[str]:
    if ALL_OPS in x:
        return y
    if ALL_OPS in y:
        return x
    return x & y


@dataclass(frozen=True)
class Capability:
    """An immutable, normalised capability: resource -> ops, where ``{"*"}`` means all operations.

    Construct with :meth:`parse` to validate untrusted input; the constructor only normalises (copies,
    sorts, collapses any set containing ``"*"`` to ``{"*"}`` and drops empty op sets).
    """

    grants: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        normal: dict[str, frozenset[str]] = {}
        for resource in sorted(self.grants):
            ops = frozenset(self.grants[resource])
            if ops:
                normal[resource] = frozenset({ALL_OPS}) if ALL_OPS in ops else ops
        object.__setattr__(self, "grants", MappingProxyType(normal))

    def __hash__(self) -> int:
        return hash(tuple(self.grants.items()))

    @classmethod
    def parse(cls, value: str | Mapping[str, object]) -> Capability:
        """Validate and normalise a capability given as JSON text or an already-decoded mapping.

        :raises CapabilityError: not a JSON object, no resources, a bad resource name, an empty or
            non-list op list, an unknown op, ``"*"`` mixed with other ops, or more than 16384 chars.
        """
        data = _load(value) if isinstance(value, str) else value
        if not isinstance(data, Mapping):
            raise CapabilityError("capability must be a JSON object")
        if not data:
            raise CapabilityError("capability must list at least one resource")
        grants: dict[str, frozenset[str]] = {}
        for resource, ops in data.items():
            check_resource(resource)
            grants[resource] = _check_ops(resource, ops)
        capability = cls(grants)
        if not isinstance(value, str) and len(capability.to_json()) > MAX_CAPABILITY_CHARS:
            raise CapabilityError(f"capability is longer than {MAX_CAPABILITY_CHARS} characters")
        return capability

    @classmethod
    def all(cls) -> Capability:
        """The unrestricted capability ``{"[*]*":["*"]}``."""
        return cls({"[*]*": frozenset({ALL_OPS})})

    def to_json(self) -> str:
        """Canonical JSON: no whitespace, resources and ops sorted (by code point)."""
        return json.dumps(
            {resource: sorted(ops) for resource, ops in self.grants.items()},
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def __str__(self) -> str:
        return self.to_json()

    def is_empty(self) -> bool:
        """True when the capability grants nothing (an empty token intersection)."""
        return not self.grants

    def intersect(self, other: Capability) -> Capability:
        """Ably token capability determination: what both ``self`` and ``other`` allow.

        For each resource pair the narrower resource is kept (if one covers the other); ops combine with
        ``"*"`` yielding the other side's ops. Pairs that merely overlap are dropped (grants less).
        The result is symmetric and may be empty; the caller rejects an empty result (Ably: 401 40160).
        """
        mine = [(r, _split(r), ops) for r, ops in self.grants.items()]
        theirs = [(r, _split(r), ops) for r, ops in other.grants.items()]
        merged: dict[str, set[str]] = {}
        for a, a_split, a_ops in mine:
            for b, b_split, b_ops in theirs:
                b_in_a, a_in_b = _covers(a_split, b_split), _covers(b_split, a_split)
                if b_in_a and a_in_b:
                    resource = min(a, b)  # equivalent patterns: pick deterministically for symmetry
                elif b_in_a:
                    resource = b
                elif a_in_b:
                    resource = a
                else:
                    continue
                ops = _combine_ops(a_ops, b_ops)
                if ops:
                    merged.setdefault(resource, set()).update(ops)
        return Capability({r: frozenset(ops) for r, ops in merged.items()})

    def operations_for(self, channel: str) -> frozenset[str]:
        """Every concrete operation allowed on ``channel`` (``"*"`` expanded to :data:`OPERATIONS`)."""
        result: set[str] = set()
        for resource, ops in self.grants.items():
            if resource_matches(resource, channel):
                if ALL_OPS in ops:
                    return OPERATIONS
                result |= ops
        return frozenset(result)

    def allows(self, channel: str, operation: str) -> bool:
        """Whether ``operation`` (a concrete op name, not ``"*"``) is allowed on ``channel``."""
        return operation in self.operations_for(channel)

    def resources(self) -> tuple[str, ...]:
        """The resource patterns, sorted."""
        return tuple(self.grants)


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # json.loads would silently keep the last of two equal keys; an ambiguous capability is refused instead.
    result: dict[str, object] = {}
    for key, item in pairs:
        if key in result:
            raise CapabilityError(f"capability lists resource {_quote(key)} more than once")
        result[key] = item
    return result


def _load(text: str) -> object:
    if len(text) > MAX_CAPABILITY_CHARS:
        raise CapabilityError(f"capability is longer than {MAX_CAPABILITY_CHARS} characters")
    try:
        data: object = json.loads(text, object_pairs_hook=_reject_duplicates)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise CapabilityError("capability is not valid JSON") from None
    return data


def check_resource(resource: object) -> None:
    """:raises CapabilityError: not a usable resource name (empty, too long, whitespace or control characters)."""
    if not isinstance(resource, str):
        raise CapabilityError("capability resource names must be strings")
    if not resource:
        raise CapabilityError("capability has an empty resource name")
    if len(resource) > MAX_RESOURCE_CHARS:
        raise CapabilityError(f"capability resource {_quote(resource)} is longer than {MAX_RESOURCE_CHARS} characters")
    # isprintable() is False for control, format, separator and unassigned code points (but True for ' ').
    if any(ch.isspace() or not ch.isprintable() for ch in resource):
        raise CapabilityError(f"capability resource {_quote(resource)} contains whitespace or control characters")


def _check_ops(resource: str, ops: object) -> frozenset[str]:
    # A bare string is a Sequence too; only real collections of op names are accepted.
    if not isinstance(ops, (list, tuple, set, frozenset)):
        raise CapabilityError(f"capability for {_quote(resource)} must be a list of operations")
    if not ops:
        raise CapabilityError(f"capability for {_quote(resource)} lists no operations")
    result: set[str] = set()
    for op in ops:
        if not isinstance(op, str):
            raise CapabilityError(f"capability for {_quote(resource)} lists a non-string operation")
        if op != ALL_OPS and op not in OPERATIONS:
            raise CapabilityError(f"capability for {_quote(resource)} lists unknown operation {_quote(op)}")
        result.add(op)
    if ALL_OPS in result and len(result) > 1:
        raise CapabilityError(f'capability for {_quote(resource)} combines "*" with other operations')
    return frozenset(result)


def expand_template(template: Mapping[str, Sequence[str]] | str, client_id: str) -> Capability:
    """Substitute ``{clientId}`` in a policy template's resource names and return the validated capability.

    Resources that become equal after substitution have their ops merged.

    :raises ClientIdError: ``client_id`` is not a safe clientId (see :func:`check_client_id`).
    :raises CapabilityError: the template is invalid, or a resource has a brace that is not ``{clientId}``.
    """
    check_client_id(client_id)
    parsed = Capability.parse(template)  # validates ops and names before substitution
    merged: dict[str, set[str]] = {}
    for resource, ops in parsed.grants.items():
        merged.setdefault(expand_resource(resource, client_id), set()).update(ops)
    # Re-parse so expanded names are length-checked; a merged set containing "*" collapses to ["*"].
    return Capability.parse({r: [ALL_OPS] if ALL_OPS in ops else sorted(ops) for r, ops in merged.items()})


def expand_resource(resource: str, client_id: str) -> str:
    """One resource name of a policy template with ``{clientId}`` substituted (``client_id`` already checked
    by :func:`check_client_id`: it can add no wildcard, segment or qualifier).

    :raises CapabilityError: the resource has a brace that is not ``{clientId}``.
    """
    rest = resource.replace(PLACEHOLDER, "")
    if "{" in rest or "}" in rest:
        raise CapabilityError(f"capability resource {_quote(resource)} has a brace that is not {PLACEHOLDER}")
    return resource.replace(PLACEHOLDER, client_id)


def specificity(pattern: str) -> tuple[int, ...]:
    """How specific a resource pattern is, as a sort key (larger = more specific).

    In order: a literal name (no wildcard at all) beats any pattern; then more literal segments; then a
    concrete qualifier (or none) beats ``[*]``; then the longer run of literal segments from the start
    (namespaces read left to right); then more segments; then no trailing ``*``. So for ``chat:room:1``
    the order is ``chat:room:1`` > ``chat:room:*`` > ``chat:*:1`` > ``chat:*`` > ``*`` > ``[*]*``.
    """
    qualifier, segments = _split(pattern)
    literal = [s for s in segments if s != "*"]
    exact = qualifier != "*" and len(literal) == len(segments)
    prefix = next((i for i, s in enumerate(segments) if s == "*"), len(segments))
    return (int(exact), len(literal), int(qualifier != "*"), prefix, len(segments), int(segments[-1] != "*"))


def most_specific(patterns: Iterable[str], name: str) -> str | None:
    """The most specific of ``patterns`` that matches ``name`` (see :func:`specificity`); equally specific
    patterns are decided by code point order, so the answer never depends on the order given."""
    best: str | None = None
    best_key: tuple[int, ...] | None = None
    for pattern in patterns:
        if not resource_matches(pattern, name):
            continue
        key = specificity(pattern)
        if best_key is None or key > best_key or (key == best_key and best is not None and pattern < best):
            best, best_key = pattern, key
    return best
