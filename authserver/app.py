"""``authserver.app:create_app``, the documented factory (``uvicorn authserver.app:create_app --factory``)."""

from __future__ import annotations

from authserver.http.app import create_app as create_app
