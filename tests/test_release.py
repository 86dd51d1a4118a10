"""A release installs anywhere: the wheel built from this checkout, installed with the locked runtime
dependencies into an empty virtualenv, serves the page, its scripts and styles from an empty working
directory, exactly as the checkout does; and the environment the tests run in is exactly the lock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from authserver import __version__

from helpers import running_authserver

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
NPM = REPO / "requirements" / "npm"
NODE_MODULES = REPO / ".cache" / "node" / "node_modules"


def lockcheck() -> object:
    """scripts/lockcheck.py, the comparison scripts/setup makes, as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lockcheck", REPO / "scripts" / "lockcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the lock -------------------------------------------------------------------------------------


def test_the_test_environment_holds_exactly_the_locked_python_versions() -> None:
    differences = lockcheck().differences(REPO / "requirements" / "dev.txt")  # type: ignore[attr-defined]
    assert differences == [], "the virtualenv is not the lock: run scripts/setup --test\n" + "\n".join(differences)


@pytest.mark.parametrize("lock", ["runtime.txt", "dev.txt"])
def test_every_declared_dependency_is_locked_within_its_declared_range(lock: str) -> None:
    pins: dict[str, str] = lockcheck().locked(REPO / "requirements" / lock)  # type: ignore[attr-defined]
    declared = list(PYPROJECT["project"]["dependencies"])
    if lock == "dev.txt":
        declared += [*PYPROJECT["project"]["optional-dependencies"]["test"]]
    for line in declared:
        requirement = Requirement(line)
        name = requirement.name.lower()
        assert name in pins, f"{requirement.name} is declared in pyproject.toml but not locked: scripts/upgrade-deps"
        assert pins[name] in requirement.specifier, (
            f"requirements/{lock} locks {name}=={pins[name]}, outside pyproject.toml's {requirement.specifier}: "
            "re-lock with scripts/upgrade-deps"
        )


def test_every_locked_version_carries_its_hashes() -> None:
    for lock in ("runtime.txt", "dev.txt", "pip.txt", "tools.txt"):
        text = (REPO / "requirements" / lock).read_text(encoding="utf-8")
        entries = re.split(r"\n(?=[a-z0-9])", text.split("\n", 2)[2])
        for entry in entries:
            if "==" in entry:
                assert "--hash=sha256:" in entry, f"requirements/{lock}: no hash for {entry.split()[0]}"


def test_the_installed_npm_packages_are_exactly_the_locked_ones() -> None:
    if not NODE_MODULES.is_dir():
        if os.environ.get("AUTHSERVER_REQUIRE_E2E") == "1":
            pytest.fail("no .cache/node: scripts/setup --test installs the npm lock")
        pytest.skip("no .cache/node (scripts/setup --test installs the npm lock)")
    lock = json.loads((NPM / "package-lock.json").read_text(encoding="utf-8"))
    manifest = json.loads((NPM / "package.json").read_text(encoding="utf-8"))
    stale = "requirements/npm/package-lock.json is stale: scripts/upgrade-deps"
    assert lock["packages"][""]["dependencies"] == manifest["dependencies"], stale
    wrong = []
    for path, entry in lock["packages"].items():
        if not path:
            continue
        installed = REPO / ".cache" / "node" / path / "package.json"
        if installed.is_file():
            version = json.loads(installed.read_text(encoding="utf-8"))["version"]
            if version != entry["version"]:
                wrong.append(f"{path}: locked {entry['version']}, installed {version}")
        elif not entry.get("optional"):
            wrong.append(f"{path}: locked {entry['version']}, not installed")
    assert wrong == [], "\n".join(wrong)


def test_the_page_pins_the_same_ably_js_on_the_cdn_as_the_npm_lock() -> None:
    from authserver.http.web import ABLY_JS_VERSION

    locked = json.loads((NPM / "package-lock.json").read_text(encoding="utf-8"))["packages"]["node_modules/ably"]
    assert locked["version"] == ABLY_JS_VERSION, (
        "requirements/npm locks another ably-js than authserver/http/web.py pins on the CDN: update ABLY_JS_VERSION "
        "and ABLY_JS_CDN_INTEGRITY together"
    )


def test_the_version_is_pyprojects() -> None:
    assert __version__ == PYPROJECT["project"]["version"] == metadata.version("authserver")
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{__version__}]" in changelog, "CHANGELOG.md has no entry for this version"


# --- the wheel ------------------------------------------------------------------------------------


@dataclass
class Installed:
    dist: Path
    program: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("release")
    dist = root / "dist"
    # Offline, with the locked hatchling: no build isolation (it would fetch hatchling anew).
    build = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)]
    result = subprocess.run(build, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check"]
    for args in (
        ["--require-hashes", "-r", str(REPO / "requirements" / "runtime.txt")],
        ["--no-deps", *dist.glob("*.whl")],
    ):
        result = subprocess.run([*pip, *map(str, args)], capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
    return Installed(dist, venv / "bin" / "authserver")


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    directory = tmp_path / "empty"
    directory.mkdir()
    return directory


def bare_env(workdir: Path, **settings: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(workdir), **settings}


def test_the_build_gives_a_wheel_and_an_sdist_of_this_version(installed: Installed) -> None:
    assert sorted(path.name for path in installed.dist.iterdir()) == [
        f"authserver-{__version__}-py3-none-any.whl",
        f"authserver-{__version__}.tar.gz",
    ]


def test_the_installed_command_prints_its_version(installed: Installed, empty: Path) -> None:
    result = subprocess.run(
        [str(installed.program), "--version"], cwd=empty, env=bare_env(empty), capture_output=True, text=True
    )
    assert (result.returncode, result.stdout) == (0, f"authserver {__version__}\n")


@pytest.fixture
def served(installed: Installed, empty: Path) -> Iterator[tuple[str, Path]]:
    """The installed wheel's ``authserver serve`` in an empty directory, nothing configured."""
    log = empty.parent / "serve.log"
    env = bare_env(empty, AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0")
    with running_authserver(["serve", "--dev"], env=env, cwd=empty, log=log, program=installed.program) as serve:
        yield serve.url, log


def test_the_installed_wheel_serves_the_page_its_scripts_and_styles(served: tuple[str, Path]) -> None:
    url, _ = served
    page = httpx.get(f"{url}/")
    assert page.status_code == 200
    assert page.text == (REPO / "web" / "index.html").read_text(encoding="utf-8")
    for name in ("app.js", "style.css", "lib/model.js", "lib/errors.js"):
        response = httpx.get(f"{url}/static/{name}")
        assert response.status_code == 200, name
        assert response.content == (REPO / "web" / name).read_bytes(), name


def test_the_installed_wheel_says_plainly_that_the_page_loads_ably_js_from_the_cdn(served: tuple[str, Path]) -> None:
    url, log = served
    assert httpx.get(f"{url}/client-config").json()["ablyJs"]["src"].startswith("https://cdn.ably.com/lib/ably.min-")
    assert "ably-js for the page: Ably's CDN, since there is no local copy in " in log.read_text(encoding="utf-8")


def test_the_installed_wheel_signs_tokens_with_its_packaged_default_policy(served: tuple[str, Path]) -> None:
    url, _ = served
    with httpx.Client(base_url=url) as client:
        assert client.post("/login", json={"username": "dana", "password": "anything"}).status_code == 200
        token = client.get("/auth")
    assert token.status_code == 200, token.text
    assert token.json()["clientId"] == "dana"
    assert json.loads(token.json()["capability"])  # the default policy's role gave this user channels


def test_the_installed_wheel_serves_a_local_ably_js_when_given_one(installed: Installed, empty: Path) -> None:
    ably = NODE_MODULES / "ably"
    if not (ably / "build" / "ably.min.js").is_file():
        if os.environ.get("AUTHSERVER_REQUIRE_E2E") == "1":
            pytest.fail("no ably-js in .cache/node: scripts/setup --test installs it")
        pytest.skip("no ably-js in .cache/node (scripts/setup --test installs it)")
    env = bare_env(
        empty, AUTHSERVER_ENV="development", AUTHSERVER_PORT="0", AUTHSERVER_SANDBOX_PORT="0", ABLY_JS_PATH=str(ably)
    )
    log = empty.parent / "serve.log"
    with running_authserver(["serve"], env=env, cwd=empty, log=log, program=installed.program) as serve:
        assert httpx.get(f"{serve.url}/client-config").json()["ablyJs"]["src"] == "/vendor/ably.min.js"
        script = httpx.get(f"{serve.url}/vendor/ably.min.js")
    assert script.content == (ably / "build" / "ably.min.js").read_bytes()
