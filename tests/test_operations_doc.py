"""``docs/operations.md`` as a specification: every ``authserver`` command it shows is one the CLI
has, and the ones for a checkout (``.venv/bin/authserver ...``) run, in the page's order, against a
SQLite database with an account: ports, backup, restore, upgrade."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from realservers import Postgres

from helpers import API_KEY, AUTHSERVER

DOC = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
#: How the page runs authserver: in a checkout, in a compose container, in a pod.
PREFIXES = (
    ".venv/bin/authserver ",
    "docker compose -f deploy/compose.yaml run --rm authserver ",
    "kubectl exec -it deploy/authserver -- authserver ",
)
BACKUPS = "/var/backups/authserver/"
#: What the shell makes of the page's ``$(date ...)`` (the file name the restore example then reads).
DATE = ("$(date +%Y%m%d-%H%M)", "20261207-0300")


def _commands() -> list[tuple[str, list[str]]]:
    """(prefix, arguments) of every authserver command in the page's ``sh`` blocks, in order."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    found = []
    for line in "\n".join(blocks).splitlines():
        for prefix in PREFIXES:
            if line.startswith(prefix):
                found.append((prefix, shlex.split(line[len(prefix) :].replace(*DATE), comments=True)))
    return found


def test_the_page_shows_commands_for_each_way_of_running_it() -> None:
    prefixes = {prefix for prefix, _ in _commands()}
    assert prefixes == set(PREFIXES)


@pytest.mark.parametrize(("prefix", "args"), _commands(), ids=[" ".join(a) for _, a in _commands()])
def test_every_command_on_the_page_is_one_the_cli_has(prefix: str, args: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [AUTHSERVER, *args, "--help"], env={"PATH": os.environ["PATH"]}, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()


def test_the_checkout_commands_run_in_order_against_a_real_database(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AUTHSERVER_ENV": "development",
        "DATABASE_URL": f"sqlite:///{tmp_path}/authserver.db",
    }
    added = subprocess.run(
        [AUTHSERVER, "users", "add", "alice"], input="correct horse battery\n", env=env, cwd=tmp_path,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    (tmp_path / "backups").mkdir()
    ran = []
    for prefix, args in _commands():
        if prefix != PREFIXES[0]:
            continue
        # the page's backup folder and the file name its cron line makes
        args = [a.replace(BACKUPS, f"{tmp_path}/backups/") for a in args]
        done = subprocess.run([AUTHSERVER, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{' '.join(args)}: {done.stderr}"
        ran.append(args[:2])
    assert ["db", "backup"] in ran and ["db", "restore"] in ran and ["db", "upgrade"] in ran
    listed = subprocess.run(
        [AUTHSERVER, "users", "list"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert listed.stdout.startswith("alice\t")


def _postgres_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    return [line for line in "\n".join(blocks).splitlines() if line.startswith(("pg_dump ", "pg_restore "))]


def test_the_postgresql_backup_commands_restore_the_accounts_as_they_were(postgres: Postgres, tmp_path: Path) -> None:
    """The page's pg_dump and pg_restore lines, as written, against a real PostgreSQL: an account added
    after the dump is gone after the restore, one removed after it is back."""
    commands = _postgres_commands()
    assert [c.split()[0] for c in commands] == ["pg_dump", "pg_restore"]
    database = f"ops_{os.getpid()}"
    postgres.psql(f"CREATE DATABASE {database}")
    env = {
        "PATH": f"{postgres.bin}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DATABASE_URL": postgres.url(database),
    }

    def authserver(*args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [AUTHSERVER, *args], input=stdin, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def shell(line: str) -> None:
        done = subprocess.run(["bash", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{line}: {done.stderr}"

    env["ABLY_API_KEY"] = API_KEY
    authserver("db", "upgrade")
    authserver("users", "add", "alice", stdin="correct horse battery\n")
    shell(commands[0])
    authserver("users", "add", "bob", stdin="another long passphrase\n")
    authserver("users", "remove", "alice")
    shell(commands[1])
    assert [line.split("\t")[0] for line in authserver("users", "list").splitlines()] == ["alice"]
