"""History queries (RSL2, RTL10, RSP4): what a page of message or presence history holds, and its
``Link`` header.

A query has ``limit``, ``direction``, a time window ``start``/``end`` (ms, inclusive, on the message
timestamp), ``fromSerial`` (what ably-js sends for ``untilAttach``: only what was published up to the
attach point) and the sandbox's ``cursor``. Entries are numbered in publish order; a cursor is the
number to continue from. The ``Link`` header names ``first``, ``current`` and, when there is more,
``next`` pages as ``./<resource>?<query>``, the form the clients parse (ably-js ``parseRelLinks``).

Pure: entries and parameters in, a page out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from authserver.errors import BadRequestError

# NOTE: ASCII digits only and few of them: str.isdigit() accepts "²", which int() then refuses.
_COUNT = re.compile(r"[0-9]{1,15}")
_SIGNED = re.compile(r"-?[0-9]{1,15}")
_SERIAL = re.compile(r"([0-9a-f]{1,32}):([0-9]{1,15})")
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class Entry:
    """One numbered history entry: its number (cursor space), channel sequence and the item itself."""

    number: int
    seq: int
    item: Mapping[str, Any]


@dataclass(frozen=True)
class HistoryQuery:
    limit: int = DEFAULT_LIMIT
    forwards: bool = False
    cursor: int | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    #: ``fromSerial`` as ``(epoch, seq)``: nothing published after it.
    until: tuple[str, int] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str], *, max_limit: int) -> HistoryQuery:
        """:raises BadRequestError: 40003 for a parameter out of range or malformed."""
        raw_limit = params.get("limit", str(DEFAULT_LIMIT))
        if not _COUNT.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= max_limit:
            raise BadRequestError(f"limit must be between 1 and {max_limit}", code=40003)
        direction = params.get("direction", "backwards")
        if direction not in ("backwards", "forwards"):
            raise BadRequestError("direction must be 'backwards' or 'forwards'", code=40003)
        start, end = _time(params, "start"), _time(params, "end")
        if start is not None and end is not None and start > end:
            raise BadRequestError("start must not be later than end", code=40003)
        raw_cursor = params.get("cursor")
        if raw_cursor is not None and not _SIGNED.fullmatch(raw_cursor):
            raise BadRequestError("cursor must be an integer", code=40003)
        until = None
        raw_serial = params.get("fromSerial") or params.get("from_serial")  # ably-js sends from_serial
        if raw_serial is not None:
            match = _SERIAL.fullmatch(raw_serial)
            if match is None:
                raise BadRequestError("fromSerial is not a serial of this channel", code=40003)
            until = (match.group(1), int(match.group(2)))
        return cls(
            limit=int(raw_limit),
            forwards=direction == "forwards",
            cursor=None if raw_cursor is None else int(raw_cursor),
            start_ms=start,
            end_ms=end,
            until=until,
        )

    def page(self, entries: Iterable[Entry], *, epoch: str) -> tuple[list[Mapping[str, Any]], int | None]:
        """One page (newest first unless ``forwards``) and the cursor of the next page, if any."""
        selected = [entry for entry in entries if self._wanted(entry, epoch)]
        if not self.forwards:
            selected.reverse()
        if self.cursor is not None:
            selected = [e for e in selected if (e.number >= self.cursor if self.forwards else e.number <= self.cursor)]
        page = selected[: self.limit]
        if len(selected) <= self.limit:
            return [e.item for e in page], None
        last = page[-1].number
        return [e.item for e in page], last + 1 if self.forwards else last - 1

    def _wanted(self, entry: Entry, epoch: str) -> bool:
        timestamp = entry.item.get("timestamp")
        if isinstance(timestamp, int):
            if self.start_ms is not None and timestamp < self.start_ms:
                return False
            if self.end_ms is not None and timestamp > self.end_ms:
                return False
        return not (self.until is not None and self.until[0] == epoch and entry.seq > self.until[1])

    def links(self, resource: str, next_cursor: int | None) -> str:
        """The ``Link`` header: ``first``, ``current`` and (when there is more) ``next``."""
        first = replace(self, cursor=None)
        rels = [("first", first), ("current", self)]
        if next_cursor is not None:
            rels.append(("next", replace(self, cursor=next_cursor)))
        return ", ".join(f'<./{resource}?{query._query()}>; rel="{rel}"' for rel, query in rels)

    def _query(self) -> str:
        fields: dict[str, str | int] = {"limit": self.limit, "direction": "forwards" if self.forwards else "backwards"}
        if self.start_ms is not None:
            fields["start"] = self.start_ms
        if self.end_ms is not None:
            fields["end"] = self.end_ms
        if self.until is not None:
            fields["fromSerial"] = f"{self.until[0]}:{self.until[1]}"
        if self.cursor is not None:
            fields["cursor"] = self.cursor
        return urlencode(fields)


def _time(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _COUNT.fullmatch(raw):
        raise BadRequestError(f"{name} must be a time in milliseconds since the epoch", code=40003)
    return int(raw)
