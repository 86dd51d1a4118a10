"""A local Ably stand-in for development and tests.

It speaks enough of Ably's realtime (WebSocket) and REST protocol for the unmodified ably-js 2.x and
ably-python 3.x clients to connect with our tokens, attach, publish, subscribe, use presence and have
their tokens renewed in band, and it judges tokens the way Ably does (see :mod:`.judge`). State is
in memory and bounded by :class:`SandboxLimits`. It is not a message broker.

Modules: ``judge`` (tokens), ``grants`` (what a credential grants, who a caller acts as, keys),
``native_tokens`` (requestToken), ``revocation``, ``protocol`` (actions, flags, codecs), ``payloads`` (what a
message may carry, and its size), ``budget`` (bytes kept across channels), ``channels`` (attachments,
presence, history), ``connections`` (connection state, transports), ``hub`` (the in-memory world),
``attachments`` (the one owner of connection <-> channel attachments and of what an attachment may do),
``frames`` (ATTACH, DETACH, SYNC), ``handshake`` (credentials, resume, CONNECTED), ``lifetime`` (a
connection's token timeline), ``realtime`` (the WebSocket session and its table of frame handlers), ``rest``
and ``app``.
"""

from __future__ import annotations

from authserver.sandbox.app import create_sandbox_app as create_sandbox_app
from authserver.sandbox.limits import LimitError as LimitError
from authserver.sandbox.limits import SandboxLimits as SandboxLimits

__all__ = ["LimitError", "SandboxLimits", "create_sandbox_app"]
