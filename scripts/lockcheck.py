"""Compare what a virtualenv holds with a lock file (requirements/*.txt, as uv pip compile writes it).

    python scripts/lockcheck.py check LOCK   exit 1 and name each difference, unless every locked
                                             package that applies here is installed at its version
                                             and nothing else is (pip, setuptools and authserver aside)
    python scripts/lockcheck.py extra LOCK   print the installed packages the lock does not name

Run it with the virtualenv's interpreter: it reads that environment's installed distributions.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

#: Installed by venv itself, or the project in development mode: never in a lock.
NOT_LOCKED = frozenset({"pip", "setuptools", "authserver"})
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)\s*(?:;(?P<marker>[^\\]*))?"
)


def locked(lock: Path) -> dict[str, str]:
    """The pins of ``lock`` whose environment markers hold for this interpreter."""
    pins: dict[str, str] = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match is None:
            continue
        marker = (match["marker"] or "").strip()
        if marker and not Marker(marker).evaluate():
            continue
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def installed() -> dict[str, str]:
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[canonicalize_name(name)] = dist.version
    return {name: version for name, version in found.items() if name not in NOT_LOCKED}


def differences(lock: Path) -> list[str]:
    want, have = locked(lock), installed()
    problems = [f"{name}: locked {version}, not installed" for name, version in want.items() if name not in have]
    problems += [
        f"{name}: locked {version}, installed {have[name]}"
        for name, version in want.items()
        if name in have and have[name] != version
    ]
    problems += [f"{name}: installed {version}, not in the lock" for name, version in have.items() if name not in want]
    return sorted(problems)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("check", "extra"):
        print(__doc__, file=sys.stderr)
        return 2
    verb, lock = argv[0], Path(argv[1])
    if verb == "extra":
        print(" ".join(sorted(set(installed()) - set(locked(lock)))))
        return 0
    problems = differences(lock)
    for problem in problems:
        print(f"{lock}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
