"""The README's shell blocks, run top to bottom in one shell against a live
server loaded with the demo data, as a reader would paste them.

The blocks are read from the README itself, so that it cannot drift from what
works. A block the test cannot run (it starts the server the test provides,
runs the test suite, or needs a production host) says so, with the reason, in
a `<!-- readme-test: skip (...) -->` line right above it. curl fails on any
error status here (`--fail-with-body`), so a call the README shows failing
fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.conf import global_settings
from django.core.management import call_command
from django.db import connection

from sync.models import Conflict

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP = re.compile(r"^<!-- readme-test: skip \((.+)\) -->$")


def shell_blocks() -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(line, text) of every ```sh block to run, and (line, reason) of those skipped."""
    lines = README.read_text().splitlines()
    run, skipped = [], []
    i = 0
    while i < len(lines):
        if lines[i].startswith("```sh"):
            end = lines.index("```", i + 1)
            reason = SKIP.match(lines[i - 1]) if i else None
            if reason:
                skipped.append((i + 1, reason.group(1)))
            else:
                run.append((i + 1, "\n".join(lines[i + 1 : end])))
            i = end
        i += 1
    return run, skipped


def test_the_readme_shell_blocks_run_top_to_bottom(live_gunicorn, tmp_path, settings):
    # The server checks passwords with the real hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    call_command("seed_demo")
    run, skipped = shell_blocks()
    assert len(run) >= 6 and all(reason for _, reason in skipped)
    script = [
        "set -eo pipefail",
        'curl() { command curl --fail-with-body "$@"; }',
        *(f"echo '### README line {line}'\n{text}" for line, text in run),
    ]
    db = connection.settings_dict
    env = {
        **os.environ,
        "PORT": str(urlsplit(live_gunicorn).port),
        "SYNC_STATE_DIR": str(tmp_path / "my-phone"),
        # manage.py in the blocks works on the database the server serves.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
    }
    exported = ROOT / "alice.json"  # the README's export writes it where it runs
    try:
        done = subprocess.run(  # noqa: S603 - bash with the README's own text
            ["/bin/bash", "-c", "\n".join(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        exported.unlink(missing_ok=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"a README block failed:\n{output[-6000:]}"
    # What the README says happens, happened.
    assert "converged: 3 devices, 64 objects each" in output  # make demo
    assert '"status":"applied"' in output and '"status":"conflict"' in output  # push
    assert "HTTP/1.1 304" in output  # If-None-Match
    assert "['1 Live Street']" in output  # a live pull, ended by a push
    # An app built against equipment's version 1 pulls it in that shape.
    v1 = "['created_at', 'customer', 'installed_on', 'location', 'name', 'owner', 'serial', "
    assert v1 + "'team', 'updated_at']" in output
    assert Conflict.objects.filter(status="open").exists()  # left for the admin
