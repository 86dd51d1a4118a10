"""The documentation: README.md (a short guide), docs/*.md (the reference) and the examples' READMEs.

Every relative link and anchor leads somewhere; every setting of ``authserver/config.py`` is in
docs/configuration.md; the README stays a two-minute read; and every command in a ``sh`` block is run by a
test: either by ``tests/examples/test_documented_commands.py`` against a live ``scripts/serve --idp``
(``RUN``), or by the test file named here, which must contain the marker given (so that the coverage claim
goes stale loudly when that test changes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from authserver.config import SETTINGS_HELP

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
#: Pages other branches add in parallel (the admin API, back-channel logout, operations runbook): linked
#: from the index already; until they are merged their absence is not a broken link.
PAGES_OF_PARALLEL_WORK: set[str] = set()
README_MAX_WORDS = 500  # about two minutes of reading
RUN = "run against scripts/serve --idp by tests/examples/test_documented_commands.py"


def documentation() -> list[Path]:
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]
    pages += sorted(p for p in (REPO / "examples").rglob("README.md") if "node_modules" not in p.parts)
    return pages


@dataclass(frozen=True)
class Command:
    page: str
    line: str


def documented_commands() -> list[Command]:
    """Each command of each ``sh`` block (continuation lines joined, comments and blank lines dropped)."""
    found: list[Command] = []
    for page in documentation():
        text = page.read_text(encoding="utf-8")
        for block in re.finditer(r"^```sh[^\n]*\n(.*?)^```", text, re.S | re.M):
            for line in block.group(1).replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#\s.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append(Command(str(page.relative_to(REPO)), re.sub(r"\s+", " ", command)))
    return found


#: A line that only sets a setting (`NAME=value`, `export NAME=value`): checked to name a real setting.
SETTING_LINE = re.compile(r"^(?:export )?([A-Z][A-Z0-9_]*)=(\S*)$")

#: How each documented command is run: (pattern, test file or RUN, marker in that file).
COVERAGE: list[tuple[str, str, str]] = [
    (r"scripts/serve --idp", RUN, ""),
    (r"scripts/serve( --port \d+)?", RUN, ""),
    (r"TOKEN_TTL=35 scripts/serve &", RUN, ""),
    (r"scripts/idp-token alice", RUN, ""),
    # the admin API's and back-channel logout's examples need a key or a signed logout token: their pages'
    # own tests take them from the page and run them against a real server
    (r"curl .*\$AUTHSERVER_URL/admin/v1/.*", "tests/http/test_admin_api.py", 'DOCS = REPO / "docs" / "admin-api.md"'),
    (r"echo", "tests/http/test_admin_api.py", 'DOCS = REPO / "docs" / "admin-api.md"'),
    (r"curl .*/oidc/backchannel-logout .*", "tests/oidc/test_backchannel_docs.py", '"backchannel-logout.md"'),
    (r"curl .*", RUN, ""),
    (r"AUTHSERVER_ENV=development \.venv/bin/authserver token --user alice", RUN, ""),
    (r"AUTHSERVER_ENV=development \.venv/bin/authserver smoke --url http://127\.0\.0\.1:8000", RUN, ""),
    (r"\.venv/bin/authserver users .*", RUN, ""),
    (r"npm ci --prefix examples/(node-backend|react)", "tests/examples/conftest.py", '[npm, "ci", "--prefer-offline"'),
    (r"npm run build --prefix examples/react", "tests/examples/test_react.py", "npm run build --prefix examples/react"),
    (
        r"ACCESS_TOKEN=\$\(scripts/idp-token alice\) node examples/node-backend/backend\.mjs --renewals 2",
        "tests/examples/test_backends.py",
        "node examples/node-backend/backend.mjs --renewals",
    ),
    (
        r"ACCESS_TOKEN=\$\(scripts/idp-token alice\) \.venv/bin/python examples/python-worker/worker\.py --renewals 2",
        "tests/examples/test_backends.py",
        "examples/python-worker/worker.py --renewals",
    ),
    (r"scripts/test", "scripts/test", "exec .venv/bin/pytest"),  # the suite's own runner
    (
        r"UPDATE_DOCS_SCREENSHOTS=1 \.venv/bin/pytest tests/examples",
        "tests/examples/conftest.py",
        "UPDATE_DOCS_SCREENSHOTS",
    ),
    (r"\.venv/bin/authserver serve \[--dev\].*", "tests/cli/test_development_mode.py", '["serve", "--dev"]'),
    (r"\.venv/bin/authserver serve --workers 4", "tests/server/test_workers.py", '"--workers"'),
    (r"\.venv/bin/authserver check( \[--online\])?", "tests/oidc/test_check.py", '"--online"'),
    (r"\.venv/bin/authserver db upgrade", "tests/cli/test_cli_postgres.py", '"db", "upgrade"'),
    (r"\.venv/bin/authserver db (backup|restore) PATH", "tests/cli/test_cli.py", '"db", "backup"'),
    (r"\.venv/bin/authserver api-keys create NAME", "tests/cli/test_admin_cli.py", '"api-keys", "create"'),
    # docs/operations.md: its checkout commands run in the page's order against a real database
    (r"\.venv/bin/authserver (check|db) .*", "tests/test_operations_doc.py", "def test_the_checkout_commands_run_in"),
    (r"pg_(dump|restore) .*", "tests/test_operations_doc.py", "def test_the_postgresql_backup_commands_restore"),
    # Nothing here runs Docker or Kubernetes: the files these commands apply are checked instead (compose's
    # sources exist, the manifests validate against the Kubernetes schema), and every authserver command
    # they run is one the CLI has (tests/test_operations_doc.py).
    (r"export ABLY_API_KEY=.*", "tests/test_deploy.py", "compose"),
    (r"docker compose .*", "tests/test_deploy.py", "compose"),
    (r"kubectl .*", "tests/test_deploy_kubernetes.py", "kubernetes_validate"),
    (r"\.venv/bin/authserver token --user alice \[.*", "tests/cli/test_cli.py", '"--format"'),
    (r"\.venv/bin/authserver sandbox .*", "tests/server/test_serve.py", '"sandbox"'),
    (r"\.venv/bin/authserver smoke .*--password-stdin", "tests/server/test_serve.py", '"--password-stdin"'),
]


def coverage_of(command: Command) -> tuple[str, str, str] | None:
    for entry in COVERAGE:
        if re.fullmatch(entry[0], command.line):
            return entry
    return None


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    return [link for link in links if not re.match(r"^[a-z]+:", link)]


@pytest.mark.parametrize("page", documentation(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_leads_somewhere(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            if target.name not in PAGES_OF_PARALLEL_WORK:
                broken.append(link)
            continue
        if anchor and target.suffix == ".md" and anchor not in anchors_of(target):
            broken.append(link)
    assert broken == []


def test_every_setting_is_in_the_configuration_reference() -> None:
    table = (DOCS / "configuration.md").read_text(encoding="utf-8")
    missing = [name for name in SETTINGS_HELP if f"| `{name}` |" not in table]
    assert missing == []


def test_the_readme_is_a_two_minute_guide_that_links_the_reference() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", readme, flags=re.S | re.M)
    assert len(prose.split()) <= README_MAX_WORDS
    for must in ("scripts/serve", "scripts/test", "--port", "docs/README.md", "docs/troubleshooting.md"):
        assert must in readme


def test_the_index_links_every_page() -> None:
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    unlisted = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and f"]({p.name})" not in index]
    assert unlisted == []


def test_how_it_works_has_the_sequence_diagram() -> None:
    page = (DOCS / "how-it-works.md").read_text(encoding="utf-8")
    diagram = page.split("```mermaid", 1)[1].split("```", 1)[0]
    assert "sequenceDiagram" in diagram
    for step in ("POST /login", "GET /auth", "AUTH (renew)", "revokeTokens", "DISCONNECTED 40141"):
        assert step in diagram


def test_ably_js_snippets_spell_the_authorization_key_in_lower_case() -> None:
    """ably-js sends credentials cross-origin only for a key spelled exactly ``authorization``."""
    for page in documentation():
        for block in re.findall(r"^```(?:js|jsx)\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M):
            assert "Authorization:" not in block, page


@pytest.mark.parametrize("command", documented_commands(), ids=lambda c: f"{c.page}: {c.line[:60]}")
def test_every_documented_command_is_run_by_a_test(command: Command) -> None:
    setting = SETTING_LINE.match(command.line)
    if setting is not None:
        assert setting.group(1) in SETTINGS_HELP, f"{setting.group(1)} is no setting"
        return
    entry = coverage_of(command)
    assert entry is not None, f"no test runs {command.line!r}: run it in a test and list it in COVERAGE"
    _, where, marker = entry
    if where != RUN:
        assert marker in (REPO / where).read_text(encoding="utf-8"), f"{where} no longer has {marker!r}"
