"""Logging set-up, with a last line of defence that scrubs credentials from every record.

``configure_logging(level, fmt)`` applies one ``dictConfig`` to the root logger and uvicorn's
loggers alike: ``text`` (one readable line) or ``json`` (one JSON object per line: ``time``,
``level``, ``logger``, ``message``, ``requestId`` inside a request, and an audit record's fields).
An audit line (:class:`FieldLines`) is written straight to that JSON handler, the same line without
the per-record machinery, when that handler alone would take it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

# access_token=..., accessToken=..., key=appId.keyId:secret in URLs; Bearer/Basic header values;
# anything that looks like a JWT.
_PATTERNS = (
    re.compile(r"(?i)((?:access_?token|key|password|token)=)[^&\s\"']+"),
    re.compile(r"(?i)((?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"()eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
    # OAuth: an authorization code or client secret in a URL or form, a PKCE code verifier anywhere.
    re.compile(r"(?i)([?&](?:code|client_secret|subject_token)=)[^&\s\"']+"),
    re.compile(r"(?i)(code_verifier['\"]?\s*[:=]\s*['\"]?)[A-Za-z0-9._~-]+"),
    # an admin API key anywhere: its public id is kept, the secret goes
    re.compile(r"(asadm_[0-9a-f]{12}_)[A-Za-z0-9_-]+"),
)


#: What every pattern above needs (lower-cased), checked first: most lines hold none of it.
_TRIGGERS = ("key=", "password=", "token=", "bearer", "basic", "code=", "client_secret=", "code_verifier", "asadm_")


def redact(text: str) -> str:
    lowered = text.lower()
    if "eyJ" not in text and not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1[redacted]", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with credentials removed (formats its args first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The formatted message replaces msg and args: the formatter does not format it a second time.
        record.msg, record.args = redact(record.getMessage()), None
        return True


#: The id of the request being handled (set by the request middleware), for every log line.
request_id: ContextVar[str | None] = ContextVar("authserver_request_id", default=None)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


_json_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
#: What JSON leaves unescaped (``ensure_ascii=False``) but some line readers (Python's ``splitlines``,
#: JavaScript before ES2019) take for a line break.
_UNICODE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _one_json_line(line: str) -> str:
    return line if line.isascii() else line.translate(_UNICODE_BREAKS)


def _json_line(value: object) -> str:
    return _one_json_line(_json_encode(value))


#: What could end or rewrite a text log line: C0 and C1 controls but the tab, DEL, Unicode line breaks.
_BREAKING = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def one_line(text: str) -> str:
    """``text`` with every character that could break or rewrite a log line escaped (``\\n``, ``\\x1b``):
    what a client sent can never forge a line of its own."""
    return text if text.isprintable() else _BREAKING.sub(_escaped, text)


#: An audit value shown bare: printable ASCII without spaces or quotes (usernames, clientIds, key ids).
_PLAIN = re.compile(r"[!#-~]+")


def shown(value: object) -> str:
    """An audit line's value as its text line shows it: bare when plain, else JSON-quoted (ASCII, every
    control character escaped), so that no value can pass for the line's other fields or a line."""
    text = str(value)
    if value is None or _PLAIN.fullmatch(text):
        return text
    return json.dumps(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line. An ``audit`` dict passed as ``extra`` is merged in."""

    _second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.time(record.created, int(record.msecs)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["requestId"] = rid
        audit = getattr(record, "audit", None)
        if isinstance(audit, dict):
            entry.update({k: v for k, v in audit.items() if k not in entry})
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return _json_line(entry)

    def time(self, created: float, msecs: int) -> str:
        second = int(created)
        if second != self._second:  # one strftime a second, not one a line
            self._second, self._stamp = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{msecs:03d}Z"


class TextFormatter(logging.Formatter):
    """One readable line per record, its message kept on it (:func:`one_line`); a traceback follows."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = one_line(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


class UvicornFloodFilter(logging.Filter):
    """uvicorn warns once per malformed request ("Invalid HTTP request received."): what any client
    can provoke at will gets a few lines a minute (see :class:`LogLimiter`)."""

    def __init__(self) -> None:
        super().__init__()
        self.limiter = LogLimiter(burst=5, interval=60.0)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING or not record.getMessage().startswith("Invalid HTTP request"):
            return True
        return self.limiter.admit("invalid-http")


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes each line in one ``write`` and flushes only a stream that does not
    flush whole lines itself (``sys.stderr`` does: the second flush per line was pure cost)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, line: str) -> None:
        """Write one formatted line as :meth:`handle` would a record (under the handler's lock)."""
        with self.lock:  # type: ignore[union-attr]
            try:
                self._write(line)
            except RecursionError:
                raise
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": "a log line could not be written"}))

    def _write(self, line: str) -> None:
        stream = self.stream
        stream.write(line + self.terminator)
        if not getattr(stream, "line_buffering", False):
            stream.flush()


#: The filters :func:`logging_config` gives the line handler: what :class:`FieldLines` applies itself.
_OWN_FILTERS = (RequestIdFilter, RedactingFilter)


def _direct_handler(logger: logging.Logger) -> LineHandler | None:
    """The JSON line handler of :func:`configure_logging` when it alone, with only its own filters,
    would take ``logger``'s info records (else None: another handler, a test's capture, text logs)."""
    if logger.filters or not logger.isEnabledFor(logging.INFO):
        return None
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        current = current.parent if current.propagate else None
    if len(found) != 1:
        return None
    handler = found[0]
    if (
        type(handler) is not LineHandler
        or type(handler.formatter) is not JsonFormatter
        or handler.level > logging.INFO
        or any(type(f) not in _OWN_FILTERS for f in handler.filters)
    ):
        return None
    return handler


#: The keys of every JSON line, which an audit record's fields do not replace.
_FIXED_KEYS = frozenset(("time", "level", "logger", "message", "requestId"))
_json_string: Callable[[str], str] = json.encoder.encode_basestring


def _json_value(value: object) -> str:
    """``value`` as :data:`_json_line` writes it: strings and plain ints directly, the rest through it."""
    if type(value) is str:
        return _json_string(value)
    if type(value) is int:
        return str(value)
    if value is None:
        return "null"
    return _json_line(value)


class FieldLines:
    """Info lines of one kind on ``logger``: a message ``template`` and the fields ``keys`` merged into
    its JSON line (an audit record), bound once.

    With JSON logs as :func:`configure_logging` sets them up, a line is written straight to its
    handler in one write: the same line :class:`JsonFormatter` makes of the record (request id,
    redacted message, fields), but without a LogRecord, filters and handler chain, the fixed parts
    formatted once and only the variable ones JSON-escaped (the audit line of every token was a tenth
    of ``/auth``'s cost). Otherwise (text logs, another handler, a test's capture), an ordinary record.
    """

    def __init__(self, logger: logging.Logger, template: str, keys: tuple[str, ...]) -> None:
        self.logger, self.template, self.keys = logger, template, keys
        self._head = f'", "level": "info", "logger": {_json_string(logger.name)}, "message": '
        #: None for a key the fixed ones shadow, as JsonFormatter drops it.
        self._key_parts = tuple(None if k in _FIXED_KEYS else f", {_json_string(k)}: " for k in keys)

    def __call__(self, args: tuple[object, ...], values: tuple[object, ...]) -> None:
        """Log ``template % args`` with the fields ``keys`` = ``values``."""
        handler = _direct_handler(self.logger)
        if handler is None:
            self.logger.info(self.template, *args, extra={"audit": dict(zip(self.keys, values, strict=True))})
            return
        now = time.time_ns()
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        parts = ['{"time": "', formatter.time(now / 1e9, (now % 1_000_000_000) // 1_000_000), self._head]
        parts.append(_json_string(redact(self.template % args)))
        rid = request_id.get()
        if rid:
            parts.append(f', "requestId": {_json_string(rid)}')
        for key_part, value in zip(self._key_parts, values, strict=True):
            if key_part is not None:
                parts.append(key_part)
                parts.append(_json_value(value))
        parts.append("}")
        handler.write_line(_one_json_line("".join(parts)))


def logging_config(level: str, fmt: str = "text") -> dict[str, Any]:
    """The ``dictConfig`` for the process: one stderr handler, for our loggers and uvicorn's."""
    formatter = "authserver.infra.logs.JsonFormatter" if fmt == "json" else "authserver.infra.logs.TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": {"()": "authserver.infra.logs.RedactingFilter"},
            "request_id": {"()": "authserver.infra.logs.RequestIdFilter"},
            "uvicorn_flood": {"()": "authserver.infra.logs.UvicornFloodFilter"},
        },
        "formatters": {"main": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "authserver.infra.logs.LineHandler",
                "formatter": "main",
                "filters": ["request_id", "redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            | ({"filters": ["uvicorn_flood"]} if name == "uvicorn.error" else {})
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi", "py.warnings")
        },
    }


_json_lines = False


def configure_logging(level: str, fmt: str = "text") -> None:
    global _json_lines
    # Our formatters use no caller, thread or process fields: no stack walk or lookups per record.
    logging._srcfile = None  # NOTE: as the logging HOWTO's "Optimization" section says
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging.config.dictConfig(logging_config(level, fmt))
    logging.captureWarnings(True)
    _json_lines = fmt == "json"


def json_lines() -> bool:
    """JSON logs are configured: the CLI reports its errors through the log too, not as plain text."""
    return _json_lines


class LogLimiter:
    """At most ``burst`` lines per ``interval`` seconds for each kind of event; the rest are counted
    and reported with the next line that gets through, so nobody can flood the log."""

    def __init__(self, *, burst: int = 5, interval: float = 60.0, clock: Any = time.monotonic) -> None:
        self.burst = burst
        self.interval = interval
        self.clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # kind -> (window start, lines, suppressed)

    def log(self, logger: logging.Logger, level: int, kind: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``kind`` is over its budget; True when it was logged."""
        suppressed = self.take(kind)
        if suppressed is None:
            return False
        logger.log(level, message + left_out(suppressed), *args)
        return True

    def take(self, kind: str) -> int | None:
        """None when ``kind`` is over its budget; else how many lines of it were left out since the
        last one (to say so in the line the caller now writes)."""
        suppressed = self._windows.get(kind, (0.0, 0, 0))[2]
        return suppressed if self.admit(kind) else None

    def admit(self, kind: str) -> bool:
        """Whether one more line of ``kind`` fits the budget (counted either way)."""
        now = self.clock()
        start, lines, suppressed = self._windows.get(kind, (now, 0, 0))
        if now - start >= self.interval:
            start, lines = now, 0
        if lines >= self.burst:
            self._windows[kind] = (start, lines, suppressed + 1)
            return False
        if len(self._windows) > 1000:
            self._windows.clear()
        self._windows[kind] = (start, lines + 1, 0)
        return True


class FirstSeen:
    """Whether a key (an origin, say) is new: True once per key for the first ``capacity`` keys;
    past that, new keys are not remembered (memory stays bounded) and a few a minute count as new."""

    def __init__(self, capacity: int = 256, *, clock: Any = time.monotonic) -> None:
        self.capacity = capacity
        self._seen: set[str] = set()
        self._overflow = LogLimiter(burst=3, interval=60.0, clock=clock)

    def first(self, key: str) -> bool:
        if key in self._seen:
            return False
        if len(self._seen) < self.capacity:
            self._seen.add(key)
            return True
        return self._overflow.admit("overflow")


def left_out(suppressed: int) -> str:
    """What a line that gets through says about the ``suppressed`` ones before it ("" for none)."""
    return f" ({suppressed} more like this not logged)" if suppressed else ""
