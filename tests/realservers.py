"""Debian's PostgreSQL and Redis, started by the tests themselves: on loopback, on ports they pick,
data in a temporary folder, stopped at the end. Never a system-wide service.

PostgreSQL refuses to run as root: when the tests run as root, the cluster belongs to the
``postgres`` system user (created by Debian's package) and its commands run through ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with initdb, or None."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


def _as_owner(argv: Sequence[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else list(argv)


def wait_until_listening(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}") from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass
class Postgres:
    """A throwaway PostgreSQL cluster in a fresh temporary folder of its own (which its owner must be
    able to reach: pytest's folders are root-only); ``url(database)`` connects as superuser ``authserver``."""

    bin: Path
    port: int = 0
    owner: str | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="authserver-pg-")))

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *argv: str) -> None:
        subprocess.run(_as_owner(argv, self.owner), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.owner = "postgres" if os.geteuid() == 0 else None
        if self.owner:
            shutil.chown(self.root, self.owner)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "authserver", "--auth=trust", "-E", "UTF8")
        for _ in range(5):  # another process may take the port between choosing and binding it
            self.port = free_port()
            try:
                self._pg_ctl_start()
            except subprocess.CalledProcessError:
                continue
            return
        raise RuntimeError(f"PostgreSQL did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def _pg_ctl_start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        wait_until_listening(self.port, 30)

    def halt(self) -> None:
        """Stop the server as an outage would (its connections cut), keeping its data and port for :meth:`resume`."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the server :meth:`halt` stopped, on the same port, with the same data."""
        self._pg_ctl_start()

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", **params: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"postgresql://authserver@127.0.0.1:{self.port}/{database}" + (f"?{query}" if query else "")

    def psql(self, sql: str, database: str = "postgres") -> None:
        subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.url(database), "-c", sql],
            check=True,
            capture_output=True,
            timeout=60,
        )


@dataclass
class Redis:
    """A throwaway redis-server: no persistence, its files in ``root``."""

    root: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        fixed = self.port
        for _ in range(5):
            self.port = fixed or free_port()
            with (self.root / "redis.log").open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(self.port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(self.root),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            try:
                wait_until_listening(self.port, 20, self.process)
                return
            except RuntimeError:
                if self.process.poll() is None:
                    self.process.kill()
                self.process.wait()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
