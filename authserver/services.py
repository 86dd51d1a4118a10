"""The collaborators the HTTP layer uses, built once by the app factory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .config import Settings
from .database import Database
from .guards import ConcurrencyGate, LoginThrottle
from .identity import Authenticator
from .identity.passwords import Passwords
from .identity.sessions import SessionStore
from .identity.users import UserStore
from .issuance import Issuer


@dataclass(frozen=True)
class Services:
    settings: Settings
    db: Database
    users: UserStore
    sessions: SessionStore
    issuer: Issuer
    authenticators: tuple[Authenticator, ...]
    clock: Callable[[], float]
    throttle: LoginThrottle
    login_gate: ConcurrencyGate


def build_services(
    settings: Settings,
    *,
    clock: Callable[[], float],
    passwords: Passwords | None = None,
    authenticators: tuple[Authenticator, ...] = (),
) -> Services:
    """Wire the domain objects from settings. ``authenticators`` are tried before the session cookie."""
    db = Database(settings.database_path)
    users = UserStore(db, passwords or Passwords(), settings.policy)
    sessions = SessionStore(db, settings.session_secret, ttl=settings.session_ttl, demo_login=settings.demo_login)
    issuer = Issuer(
        keys=settings.ably_keys,
        policy=settings.policy,
        key_capability=settings.key_capability,
        token_ttl=settings.token_ttl,
        token_max_ttl=settings.token_max_ttl,
        clock=clock,
    )
    # argon2id costs 64 MiB and tens of ms per check: a couple per core at once, a short queue.
    gate = ConcurrencyGate(slots=max(2, os.cpu_count() or 2), queue=64)
    return Services(settings, db, users, sessions, issuer, (*authenticators, sessions), clock, LoginThrottle(), gate)
