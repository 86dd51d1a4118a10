"""What every command-line test shares."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from authserver.cli import main


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # main() configures process-wide logging, as a command should; put it back for the next test.
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = saved[0], saved[1]


def run(
    capsys: pytest.CaptureFixture[str], environ: dict[str, str], *argv: str, stdin: str = ""
) -> tuple[int, str, str]:
    """``authserver ARGV`` in process with ``environ`` and ``stdin``: its exit code, stdout and stderr."""
    capsys.readouterr()
    code = main(list(argv), environ=environ, stdin=io.StringIO(stdin))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
