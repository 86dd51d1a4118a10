"""SQLite's shared-memory file (``<db>-shm``, the WAL index every connection maps into memory).

What was checked (SQLite 3.40, ext4, as root and as ``nobody`` through ``setpriv``): a ``-shm`` that
cannot be written (not the user's, or ``chattr +i``) is no crash: SQLite refuses to open with "attempt
to write a readonly database", which names the wrong file; a full filesystem is a "disk I/O error"
(SQLite writes each new page of the file before mapping it). The SIGBUS comes from a ``-shm``
*truncated* under a connection that has it mapped: the next access to the mapping kills the process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from authserver.errors import DatabaseError
from authserver.storage.sqlite import SqliteStorage

NOBODY = 65534


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[Path]:
    """A database in WAL mode whose ``-shm`` nobody may write, root included (``chattr +i``)."""
    path = tmp_path / "auth.db"
    SqliteStorage(str(path)).db.close()
    shm = Path(f"{path}-shm")
    shm.touch()
    made = subprocess.run(["chattr", "+i", str(shm)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is refused here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(shm)], check=True)


def test_an_unwritable_shm_file_is_a_clear_error_that_names_it(immutable: Path) -> None:
    with pytest.raises(DatabaseError) as caught:
        SqliteStorage(str(immutable))
    assert caught.value.message == (
        f"cannot open database {str(immutable)!r}: its shared-memory file {str(immutable)}-shm is not writable"
        " by this user (made by another user, or read-only): give it to the user authserver runs as, or"
        " remove it while no process has the database open"
    )


OPEN_AS_USER = """
    import sys
    from authserver.errors import DatabaseError
    from authserver.storage.sqlite import SqliteStorage
    try:
        SqliteStorage(sys.argv[1])
    except DatabaseError as exc:
        print(exc.message)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_a_shm_file_of_another_user_is_the_same_clear_error_for_an_unprivileged_service() -> None:
    folder = Path(tempfile.mkdtemp(prefix="authserver-shm-"))  # pytest's folders are root-only
    try:
        folder.chmod(0o777)
        path = folder / "auth.db"
        SqliteStorage(str(path)).db.close()
        os.chown(path, NOBODY, NOBODY)
        Path(f"{path}-shm").touch(mode=0o644)  # root's, as a CLI run as root leaves it
        as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c"]
        probe = subprocess.run([*as_nobody, "import authserver.storage.sqlite"], capture_output=True, timeout=60)
        if probe.returncode != 0:  # e.g. a checkout in a folder only root may enter (mktemp -d)
            pytest.skip("the unprivileged user cannot read this checkout or its virtualenv")
        ran = subprocess.run(
            [*as_nobody, textwrap.dedent(OPEN_AS_USER), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        assert f"its shared-memory file {path}-shm is not writable by this user" in ran.stdout
    finally:
        shutil.rmtree(folder)


@pytest.mark.anyio
async def test_a_shm_file_made_unwritable_while_serving_is_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    storage = SqliteStorage(str(path))
    await storage.open()
    assert await storage.ready() is None
    shm = f"{path}-shm"
    if subprocess.run(["chattr", "+i", shm], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is refused here")
    try:
        assert await storage.ready() == "the database's shared-memory file (-shm) is not writable"
    finally:
        subprocess.run(["chattr", "-i", shm], check=True)
    await storage.close()


#: Opens the store, truncates its -shm as something outside authserver might, then uses it again.
TRUNCATED = """
    import asyncio, logging, os, sys
    from authserver.storage import UserRecord
    from authserver.storage.sqlite import SqliteStorage

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    path = sys.argv[1]

    async def main():
        storage = SqliteStorage(path)
        await storage.open()
        assert await storage.users.insert(UserRecord("alice", "alice", "user", False, "h"), created=0.0)
        os.truncate(path + "-shm", 0)
        assert await storage.users.insert(UserRecord("bob", "bob", "user", False, "h"), created=0.0)
        print(sorted(u.username for u in await storage.users.all()), await storage.ready(), flush=True)
        await storage.close()

    asyncio.run(main())
"""


def test_a_shm_file_truncated_under_the_running_service_is_logged_and_repaired_not_a_sigbus(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    ran = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(TRUNCATED), str(path)], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == ["['alice', 'bob'] None"]
    assert f"ERROR the database's shared-memory file {path}-shm was truncated" in ran.stderr
    assert os.path.getsize(path) > 0


#: The same, but the truncated file can be neither extended nor replaced (``chattr +i``).
LOST = """
    import asyncio, logging, os, subprocess, sys
    from authserver.errors import StoreUnavailableError
    from authserver.storage import UserRecord
    from authserver.storage.sqlite import SqliteStorage

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    path = sys.argv[1]

    async def main():
        storage = SqliteStorage(path)
        await storage.open()
        assert await storage.users.insert(UserRecord("alice", "alice", "user", False, "h"), created=0.0)
        os.truncate(path + "-shm", 0)
        subprocess.run(["chattr", "+i", path + "-shm"], check=True)
        for _ in range(2):
            try:
                await storage.users.all()
            except StoreUnavailableError as exc:
                print(exc.status, exc.message, flush=True)
        await storage.close()
        print("closed", flush=True)

    asyncio.run(main())
"""


def test_a_truncated_shm_file_that_cannot_be_put_back_is_a_503_until_restart_and_no_crash(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    if subprocess.run(["chattr", "+i", str(tmp_path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is refused here")
    subprocess.run(["chattr", "-i", str(tmp_path)], check=True)
    try:
        ran = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(LOST), str(path)], capture_output=True, text=True, timeout=60
        )
    finally:
        subprocess.run(["chattr", "-i", f"{path}-shm"], check=False)
    assert ran.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert ran.returncode == 0, ran.stderr
    refused = "503 database unavailable: the database's shared-memory file was truncated and cannot be restored:"
    assert ran.stdout.splitlines() == [f"{refused} restart authserver"] * 2 + ["closed"]
    assert f"cannot restore {path}-shm" in ran.stderr
