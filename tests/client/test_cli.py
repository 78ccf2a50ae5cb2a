"""`python -m client`: a whole session from the command line."""

from __future__ import annotations

import functools
import json
import re

import httpx
import pytest

from client import SyncClient, cli
from tests.client.conftest import BASE_URL
from tests.factories import UserFactory
from tests.oracle import ORDER

pytestmark = pytest.mark.django_db

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def run(wsgi, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "SyncClient", functools.partial(SyncClient, transport=wsgi))
    monkeypatch.delenv("SYNC_STATE_DIR", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["--state-dir", str(tmp_path / "cli"), "--url", BASE_URL, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_a_session_from_the_command_line(run, make_device):
    user = UserFactory()
    code, _, err = run("login", user.username, "--password", "wrong")
    assert code == 1 and "invalid_credentials" in err and "Traceback" not in err
    assert run("sync")[0] == 1  # not logged in yet
    assert run("login", user.username, "--password", "pw-123456789")[0] == 0
    code, out, _ = run("register", "--name", "laptop")
    assert code == 0 and "registered" in out

    _, out, _ = run("create", "customer", "name=Acme Ltd", "email=ops@acme.test")
    customer = UUID.search(out).group()
    _, out, _ = run(
        "create", "workorder", f"customer={customer}", "title=Boiler", "estimated_hours=2.5"
    )
    order = UUID.search(out).group()
    _, out, _ = run("status")
    assert "pending     2" in out
    _, out, _ = run("sync")
    assert "initial sync: pushed 2 applied; pulled 2 changes." in out
    _, out, _ = run("list", "workorder", "--fields", "title,estimated_hours")
    assert order in out and "Boiler" in out and "2.5" in out

    code, _, err = run("edit", "workorder", order, "status=finished")
    assert code == 1 and "status" in err and "not a valid choice" in err
    assert run("edit", "workorder", order, "status=done", "team:=null")[0] == 0
    _, out, _ = run("sync")
    assert "pushed 1 applied" in out

    # Another device of the user changes the title meanwhile: a conflict.
    tablet = make_device(user=user)
    tablet.client.sync()
    tablet.client.update(ORDER, order, {"title": "Boiler (tablet)"})
    run("edit", "workorder", order, "title=Boiler (laptop)")
    tablet.client.sync()
    _, out, _ = run("sync")
    conflict = re.search(rf"conflict ({UUID.pattern})", out).group(1)
    _, out, _ = run("status")
    assert "1 open" in out and conflict in out
    _, out, _ = run("conflicts")
    assert "title: base Boiler | server Boiler (tablet) | yours Boiler (laptop)" in out
    code, out, _ = run("resolve", conflict, "fields", "title=Boiler (both)")
    assert code == 0 and "Resolved" in out
    _, out, _ = run("show", "workorder", order)
    shown = json.loads(out)
    assert shown["title"] == "Boiler (both)" and shown["status"] == "done"

    # A customer with work orders cannot be deleted: the server says why.
    run("delete", "customer", customer)
    _, out, _ = run("sync")
    assert "rejected delete fieldwork.customer" in out and "Cannot be deleted" in out
    _, out, _ = run("rejections")
    assert "Cannot be deleted" in out
    _, out, _ = run("list", "customer")
    assert customer in out  # back from the server copy

    _, out, _ = run("models")
    assert "fieldwork.workorder" in out and "in_progress" in out


def test_follow_syncs_then_follows_until_ctrl_c(run, wsgi, monkeypatch, settings):
    settings.LIVE_PULL_MAX_WAIT = 1
    live_pulls: list[httpx.Request] = []

    class CtrlC(httpx.BaseTransport):
        """Ctrl-C during the second live pull."""

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/sync/live/"):
                live_pulls.append(request)
                if len(live_pulls) == 2:
                    raise KeyboardInterrupt
            return wsgi.handle_request(request)

    monkeypatch.setattr(cli, "SyncClient", functools.partial(SyncClient, transport=CtrlC()))
    monkeypatch.setenv("SYNC_LIVE_URL", "https://testserver:8443")
    user = UserFactory()
    run("login", user.username, "--password", "pw-123456789")
    run("create", "customer", "name=Acme")
    code, out, _ = run("follow", "--wait", "5")
    assert code == 0
    assert "Following https://testserver:8443 (Ctrl-C to stop)." in out
    assert "initial sync: pushed 1 applied; pulled 1 changes." in out
    assert out.rstrip().endswith("Stopped.")
    assert live_pulls[0].url.params["wait"] == "5"
