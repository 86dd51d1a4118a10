"""The login page's pure helpers (``web/lib/*.js``) under Node's own test runner.

The unit tests themselves are JavaScript, in ``tests/web/*.test.mjs``; this runs them as part of the
pytest suite, so ``scripts/test`` and CI need nothing extra. Each Node test's name shows in the
failure output.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.node

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def test_page_helpers_pass_their_node_unit_tests() -> None:
    if NODE is None:
        pytest.skip("node is not installed (the set-up script installs Node.js)")
    tests = sorted(str(path.relative_to(REPO)) for path in (REPO / "tests" / "web").glob("*.test.mjs"))
    assert len(tests) >= 6, tests
    done = subprocess.run(
        [NODE, "--test", "--test-reporter=spec", *tests], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"node --test failed:\n{done.stdout}\n{done.stderr}"
    assert "# fail 0" in done.stdout or "fail 0" in done.stdout, done.stdout


def test_page_scripts_are_es_modules_loaded_as_such() -> None:
    html = (REPO / "web" / "index.html").read_text(encoding="utf-8")
    assert '<script type="module" src="/static/app.js"></script>' in html
    for module in (REPO / "web").rglob("*.js"):
        text = module.read_text(encoding="utf-8")
        assert "console." not in text, f"{module.name} writes to the console"


def test_the_page_has_no_channel_matcher_of_its_own() -> None:
    # What a capability allows on a channel is decided by authserver/core/capabilities.py, which the page
    # asks through GET /session?channel= (tests/http/test_routes.py shows it for "[*]*"). A second matcher in
    # JavaScript already disagreed with it once.
    for module in (REPO / "web").rglob("*.js"):
        text = module.read_text(encoding="utf-8")
        assert "[*]*" not in text and "resourceMatches" not in text, module.name
    assert "/session?channel=" in (REPO / "web" / "app.js").read_text(encoding="utf-8")
