"""The TypeScript client (clients/typescript) against a live server on PostgreSQL.

Builds the package with npm (`npm ci` first when node_modules is missing)
and runs its Node tests, unit and integration, with `SYNC_URL` pointing at a
gunicorn serving the test database: two devices of the TypeScript client
merge, conflict, get a rejection, resolve from the app and converge.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import global_settings
from django.contrib.auth import get_user_model

from tests.live import gunicorn

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

PACKAGE = Path(__file__).resolve().parents[2] / "clients" / "typescript"
PASSWORD = "ts-client-pass-9731"  # noqa: S105 - a test user's


def _missing(what: str) -> None:
    """Skip, or fail when REQUIRE_SERVICES=1 (as the services' markers do)."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but this test needs {what}")
    pytest.skip(f"needs {what}")


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _missing("Node.js and npm on PATH (apt-get install nodejs npm)")
    assert node is not None and npm is not None
    return node, npm


def _run(command: list[str], *, env: dict[str, str] | None = None, timeout: float = 600) -> None:
    done = subprocess.run(  # noqa: S603 - npm and node, fixed arguments
        command, cwd=PACKAGE, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {done.returncode}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def built() -> Iterator[str]:
    """The package built (dist/ and dist-test/); yields node's path."""
    node, npm = _tools()
    if not (PACKAGE / "node_modules").is_dir():
        _run([npm, "ci", "--no-audit", "--no-fund"])
    _run([npm, "run", "build"])
    _run([npm, "run", "build:test"])
    yield node


@pytest.fixture(scope="module")
def live_gunicorn(django_db_setup: None) -> Iterator[str]:
    with gunicorn(LOG_LEVEL="WARNING", THROTTLE_USER="100000/min") as base:
        yield base


def test_the_typescript_client_syncs_against_a_live_server(built, live_gunicorn, settings):
    # The server checks passwords with the real hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    user = get_user_model().objects.create_user("ts-client", password=PASSWORD)
    assert user.check_password(PASSWORD)
    compiled = (PACKAGE / "dist-test" / "test").glob("*.test.js")
    tests = sorted(str(path.relative_to(PACKAGE)) for path in compiled)
    assert "dist-test/test/integration.test.js" in tests
    env = {
        **os.environ,
        "SYNC_URL": live_gunicorn,
        "SYNC_USER": "ts-client",
        "SYNC_PASSWORD": PASSWORD,
        "SYNC_FILES": "1",  # the server stores files (its local file system here)
    }
    done = subprocess.run(  # noqa: S603 - node, fixed arguments
        [built, "--test", "--test-reporter=spec", *tests],
        cwd=PACKAGE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
    assert done.returncode == 0, f"node --test exited {done.returncode}\n{output}"
    # The integration test ran (it skips itself without SYNC_URL) and passed.
    assert "two devices merge, conflict, get rejected, resolve and converge" in done.stdout, output
    assert "the other fetches it" in done.stdout, output  # the file round trip ran too
    assert "# skipped 0" in done.stdout or "ℹ skipped 0" in done.stdout, output
