"""A back-end developer adopts the package from its wheel, following only the
README's "Add sync to your Django project".

Nothing of this repository is imported by the project under test: the wheel
is built from a clean copy of the sources, installed with its dependencies
into a fresh virtualenv, and a project made by `django-admin startproject`
(plus an app made by `startapp`) is edited exactly as the guide says. Every
check goes through that project's `manage.py` or over HTTP to its
`runserver`, as a developer and a device would.

The module's fixture does guide steps 1-7 once (one wheel, one virtualenv, one
project, one database, one server); the tests then follow one device user's
day in order (each needs the previous one's state and skips without it):
log in, register, push and pull; a wake-up; server-side writes of every kind;
a stale edit that staff resolve in the admin; a staff edit in the synced admin.

Run: DATABASE_URL=postgres://... REQUIRE_SERVICES=1 pytest -s tests/adoption
(`-s` prints a line per step; ADOPTION_KEEP=1 keeps the temporary directory).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.adoption]

ROOT = Path(__file__).resolve().parents[2]
# What the wheel must hold, and top-level names of this repository it must not
# install into a project's environment (pyproject: "the reference project,
# demo app and client stay here").
PACKAGES = ("sync", "devices", "syncbase")
NOT_SHIPPED = ("config", "fieldwork", "client", "tests", "bench")
# `django-admin startproject site` is refused: `site` is a standard-library
# module. The Django tutorial's name instead.
PROJECT = "mysite"
PASSWORD = "adopt-pass-1234"
STAFF, USER = "boss", "worker"
JOB = "jobs.job"
PUSH_LINE = "push (console backend)"
LOG_TAIL_LINES = 60

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[adoption {time.monotonic() - T0:6.1f}s] {message}", flush=True)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _where(exc: BaseException) -> str:
    """The innermost line of this module the exception went through."""
    here = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == __file__]
    if not here:
        return "?"
    frame = here[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}: {frame.line}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_params() -> dict[str, str]:
    """Where to create the project's database: DATABASE_URL's server, else the local one."""
    url = urllib.parse.urlsplit(os.environ.get("DATABASE_URL", ""))
    if not url.scheme.startswith("postgres"):
        url = urllib.parse.urlsplit("postgres://postgres@127.0.0.1:5432/postgres")
    return {
        "HOST": url.hostname or "127.0.0.1",
        "PORT": str(url.port or 5432),
        "USER": urllib.parse.unquote(url.username or "postgres"),
        "PASSWORD": urllib.parse.unquote(url.password or ""),
    }


def _clean_env(venv_bin: Path) -> dict[str, str]:
    """A developer's shell: no DJANGO_SETTINGS_MODULE, DATABASE_URL, REDIS_URL or
    anything else of this repository's test run; pip's configuration kept."""
    keep = {"HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TERM", "USER", "LOGNAME", "TZ"}
    env = {
        k: v
        for k, v in os.environ.items()
        if k in keep
        or k.startswith(("PIP_", "SSL_CERT_", "REQUESTS_CA_"))
        or k.lower() in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    }
    main_bin = str(Path(sys.executable).parent)
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != main_bin]
    env["PATH"] = os.pathsep.join([str(venv_bin), *path])
    env["PYTHONUNBUFFERED"] = "1"  # the server's log reaches its file at once
    return env


# --- HTTP, with the standard library -------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx comes back as the answer, to be looked at


def _opener(cookies: http.cookiejar.CookieJar | None = None) -> urllib.request.OpenerDirector:
    handlers: list[Any] = [_NoRedirect()]
    if cookies is not None:
        handlers.append(urllib.request.HTTPCookieProcessor(cookies))
    return urllib.request.build_opener(*handlers)


def http_request(
    opener: urllib.request.OpenerDirector,
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any, str]:
    # Our own server's http:// address only.
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.status, response.headers, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode(errors="replace")


@dataclass
class Api:
    """A device's calls: JSON, its token, and its X-Device-Id once it has one."""

    base: str
    token: str | None = None
    device: str | None = None
    opener: urllib.request.OpenerDirector = field(default_factory=_opener)

    def call(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if self.device:
            headers["X-Device-Id"] = self.device
        status, _, text = http_request(
            self.opener, method, self.base + path, data=data, headers=headers
        )
        assert status == expect, (
            f"{method} {path} answered {status} (expected {expect}): {text[:2000]}"
        )
        return json.loads(text) if text else None

    def push(self, *mutations: dict[str, Any]) -> list[dict[str, Any]]:
        body = self.call("POST", "/api/v1/sync/push/", {"mutations": list(mutations)})
        assert len(body["results"]) == len(mutations), body
        return body["results"]

    def pull_all(self, cursor: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """Pulls until has_more is false: every change, and the last cursor."""
        changes: list[dict[str, Any]] = []
        for _ in range(100):
            query = "?" + urllib.parse.urlencode({"cursor": cursor}) if cursor else ""
            page = self.call("GET", f"/api/v1/sync/pull/{query}")
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                return changes, cursor
        raise AssertionError("pull never reached has_more: false")


def create(job_id: str, **data: Any) -> dict[str, Any]:
    return {
        "mutation_id": str(uuid.uuid4()),
        "model": JOB,
        "op": "create",
        "id": job_id,
        "base_version": None,
        "data": data,
    }


def update(job_id: str, base_version: int, **data: Any) -> dict[str, Any]:
    return {
        "mutation_id": str(uuid.uuid4()),
        "model": JOB,
        "op": "update",
        "id": job_id,
        "base_version": base_version,
        "data": data,
    }


class FormReader(HTMLParser):
    """The values a browser would submit from one form (by id), and every
    form's csrfmiddlewaretoken."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = False
        self.values: dict[str, str] = {}
        self._select: str | None = None
        self._first_option: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "reset", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self.values[name] = a.get("value", "on" if kind == "checkbox" else "")
        elif tag == "select" and name:
            self._select, self._first_option = name, None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._first_option is None:
                self._first_option = value
            if "selected" in a:
                self.values[self._select] = value
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select" and self._select:
            self.values.setdefault(self._select, self._first_option or "")
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.values[self._textarea] += data


def csrf_token_of(page: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, f"no csrfmiddlewaretoken in the page: {page[:1500]}"
    return match.group(1)


# --- the project under test -----------------------------------------------------------


README = Path(__file__).resolve().parents[2] / "README.md"


def guide_block(step: int) -> str:
    """The first python block of the guide's step `step`, as the README has it
    (dedented), so that the README cannot drift from what this test runs."""
    text = README.read_text()
    section = text[text.index("## Add sync to your Django project") :]
    section = section[: section.index("\n## ", 1)]
    item = section[section.index(f"\n{step}. ") :]
    match = re.search(r"```python\n(.*?)\n\s*```", item, re.S)
    assert match, f"README step {step} has no python block"
    return textwrap.dedent(match.group(1))


GUIDE_SETTINGS = (
    '\n\n# --- README "Add sync to your Django project", step 2 ---\n'
    + guide_block(2)
    + "\n\n# The project's own app (startapp jobs), as for any Django app.\n"
    + 'INSTALLED_APPS += ["jobs"]\n'
)

# Not from the guide, and the only settings edit beyond it: this test's own
# PostgreSQL database instead of startproject's SQLite file.
DATABASE_SETTINGS = """
# --- Not in the guide: the adoption test's own PostgreSQL database (the only extra edit) ---
DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", **{params!r}}}}}
"""

GUIDE_URLS = """
# --- README "Add sync to your Django project", step 3 ---
urlpatterns += [
    path("api/v1/", include("sync.urls")),
    path("", include("sync.urls_ops")),
]
"""

# Step 4, as the guide shows it, with the imports its names need.
JOBS_MODELS = (
    "from django.conf import settings\nfrom django.db import models\n\n" + guide_block(4) + "\n"
)

# Step 5: registered in the app's AppConfig.ready().
JOBS_APPS = """\
from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"

    def ready(self):
        import sync
        from jobs.models import Job

        sync.register(Job, fields=["title", "status"])
"""

# Step 5, the optional admin.
JOBS_ADMIN = """\
from django.contrib import admin

from sync.admin import SyncedModelAdmin

from .models import Job

admin.site.register(Job, SyncedModelAdmin)
"""


@dataclass
class Site:
    tmp: Path
    db_name: str
    pg: dict[str, str]
    venv: Path = field(init=False)
    project: Path = field(init=False)
    env: dict[str, str] = field(init=False)
    log: Path = field(init=False)
    base: str = ""
    server: subprocess.Popen | None = None
    db_created: bool = False

    def __post_init__(self) -> None:
        self.venv = self.tmp / "venv"
        self.project = self.tmp / "project"
        self.log = self.tmp / "server.log"
        self.log.touch()
        self.env = _clean_env(self.venv / "bin")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    # --- reporting ---

    def log_tail(self) -> str:
        text = self.log.read_text(errors="replace")
        if not text.strip():
            return "--- server log: empty (the server had not started or said nothing) ---"
        return f"--- server log, last {LOG_TAIL_LINES} lines ({self.log}) ---\n" + tail(
            text, LOG_TAIL_LINES
        )

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A step of the guide (or a check): a failure names it and shows the server's log."""
        start = time.monotonic()
        failure = None
        try:
            yield
        except (pytest.fail.Exception, pytest.skip.Exception, KeyboardInterrupt):
            raise
        except BaseException as exc:
            failure = f"{name} FAILED\n{type(exc).__name__}: {exc}\n  at {_where(exc)}\n"
        if failure is not None:
            say(f"FAILED  {name}")
            # The report is this message alone, not a chain of exceptions.
            raise pytest.fail.Exception(failure + self.log_tail(), pytrace=False) from None
        say(f"ok  {name} ({time.monotonic() - start:.1f}s)")

    # --- commands ---

    def run(self, *args: str | Path, cwd: Path | None = None, timeout: float = 300) -> str:
        argv = [str(a) for a in args]
        try:
            proc = subprocess.run(  # noqa: S603 - fixed commands of this test
                argv,
                cwd=cwd or self.project,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"`{' '.join(argv)}` did not finish in {timeout:.0f}s") from exc
        shown = " ".join(a if len(a) < 200 else a[:200] + "…" for a in argv)
        assert proc.returncode == 0, (
            f"`{shown}` exited with {proc.returncode}\n"
            f"--- its stdout ---\n{tail(proc.stdout)}\n--- its stderr ---\n{tail(proc.stderr)}"
        )
        return proc.stdout + proc.stderr

    def manage(self, *args: str, timeout: float = 180) -> str:
        return self.run(self.python, "manage.py", *args, timeout=timeout)

    def shell(self, code: str) -> str:
        """A separate process of the project: `manage.py shell -c`."""
        return self.manage("shell", "-c", code)

    # --- the database and the server ---

    def pg_connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            dbname="postgres",
            host=self.pg["HOST"],
            port=self.pg["PORT"],
            user=self.pg["USER"],
            password=self.pg["PASSWORD"] or None,
            autocommit=True,
        )

    def create_database(self) -> None:
        with self.pg_connect() as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_created = True

    def drop_database(self) -> None:
        if not self.db_created:
            return
        with self.pg_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')

    def start_server(self) -> None:
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        output = self.log.open("ab")
        self.server = subprocess.Popen(  # noqa: S603 - the project's own runserver
            [self.python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=self.project,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        output.close()
        opener = _opener()
        deadline = time.monotonic() + 60
        last = "no answer"
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise AssertionError(f"runserver exited with {self.server.returncode}")
            try:
                status, _, body = http_request(opener, "GET", self.base + "/healthz", timeout=2)
                if status == 200:
                    return
                last = f"{status}: {body[:300]}"
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(f"GET /healthz did not answer 200 within 60 s (last: {last})")

    def stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.terminate()
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(10)


def build_wheel(site: Site) -> Path:
    """Guide step 1's `pip wheel --no-deps .`, from a clean copy of the sources.

    Not in place: a `build/` left in the checkout by an earlier build would be
    reused (a module deleted since would still ship), and the build would
    write `build/` and `*.egg-info` into the checkout.
    """
    src, dist = site.tmp / "src", site.tmp / "dist"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            "*.pyc",
            "*.whl",
            ".hypothesis",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            "db.sqlite3*",
            "staticfiles",
            "node_modules",
        ),
    )
    site.run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, src, cwd=src)
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {dist}, found {[w.name for w in wheels]}"
    wheel = wheels[0]

    names = set(zipfile.ZipFile(wheel).namelist())
    tops = sorted(
        {n.split("/")[0] for n in names if "/" in n}
        - {t for t in (n.split("/")[0] for n in names) if t.endswith((".dist-info", ".data"))}
    )
    say(f"    {wheel.name}: {len(names)} files, top-level {tops}")
    absent = [p for p in PACKAGES if f"{p}/__init__.py" not in names]
    assert not absent, (
        f"the wheel {wheel.name} lacks the packages {absent}: it holds "
        f"{tops or 'no package at all'} (pyproject.toml's [tool.setuptools] must list them)"
    )
    # Every file of those packages ships: templates, migrations, SQL, static files.
    left_out = sorted(
        f.relative_to(src).as_posix()
        for package in PACKAGES
        for f in (src / package).rglob("*")
        if f.is_file()
        and "__pycache__" not in f.parts
        and f.relative_to(src).as_posix() not in names
    )
    assert not left_out, f"files of the packages missing from the wheel: {left_out}"
    stray = [t for t in tops if t in NOT_SHIPPED]
    assert not stray, f"the wheel installs this repository's {stray} as top-level packages"
    return wheel


def make_project(site: Site) -> None:
    """`django-admin startproject`, `startapp jobs`, and guide steps 2-5."""
    site.project.mkdir()
    with site.step("startproject / startapp (Django's own commands, from the new virtualenv)"):
        site.run(site.venv / "bin" / "django-admin", "startproject", PROJECT, ".")
        site.manage("startapp", "jobs")

    with site.step("guide step 2 (settings.py: apps, KNOX_TOKEN_MODEL, history middleware)"):
        settings_py = site.project / PROJECT / "settings.py"
        text = settings_py.read_text()
        assert "INSTALLED_APPS = [" in text and "MIDDLEWARE = [" in text, text
        settings_py.write_text(
            text
            + GUIDE_SETTINGS
            + DATABASE_SETTINGS.format(params=dict(site.pg, NAME=site.db_name))
        )

    with site.step("guide step 3 (urls.py: sync.urls and sync.urls_ops)"):
        urls_py = site.project / PROJECT / "urls.py"
        text = urls_py.read_text()
        assert "from django.urls import path\n" in text, text
        text = text.replace(
            "from django.urls import path\n", "from django.urls import include, path\n"
        )
        urls_py.write_text(text + GUIDE_URLS)

    with site.step(
        "guide steps 4-5 (Job(SyncedModel), sync.register in ready(), SyncedModelAdmin)"
    ):
        app = site.project / "jobs"
        (app / "models.py").write_text(JOBS_MODELS)
        (app / "apps.py").write_text(JOBS_APPS)
        (app / "admin.py").write_text(JOBS_ADMIN)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    tmp = Path(tempfile.mkdtemp(prefix="sync-adoption-"))
    site = Site(tmp=tmp, db_name=f"sync_adoption_{uuid.uuid4().hex[:12]}", pg=_pg_params())
    say(f"working in {tmp}")
    try:
        with site.step(
            "guide step 1 (pip wheel --no-deps: the wheel holds sync, devices, syncbase)"
        ):
            wheel = build_wheel(site)
        with site.step("guide step 1 (pip install <wheel> into a fresh virtualenv)"):
            site.run("python3", "-m", "venv", site.venv, cwd=tmp)
            # --no-compile: the .pyc files are written on first import instead,
            # only for what the project imports (saves ~6 s on 2 cores).
            site.run(
                site.python,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-compile",
                wheel,
                cwd=tmp,
                timeout=900,
            )
        make_project(site)
        with site.step("a fresh PostgreSQL database for the project"):
            site.create_database()
        with site.step("guide step 6 (makemigrations)"):
            out = site.manage("makemigrations")
            assert (site.project / "jobs" / "migrations" / "0001_initial.py").exists(), out
        with site.step("guide step 6 (migrate)"):
            site.manage("migrate", "--noinput")
        with site.step("guide step 7 (check names nothing wrong)"):
            out = site.manage("check")
            assert "ERRORS:" not in out and "sync.E" not in out, out
            if "WARNINGS:" in out:
                say(f"    check warned:\n{out}")
        with site.step("users (a superuser and a device user, in manage.py shell)"):
            out = site.shell(
                "import sync, devices, syncbase\n"
                "print('packages from', sync.__file__)\n"
                "from django.contrib.auth import get_user_model\n"
                "User = get_user_model()\n"
                f"User.objects.create_superuser({STAFF!r}, 'boss@example.test', {PASSWORD!r})\n"
                f"User.objects.create_user({USER!r}, password={PASSWORD!r})\n"
            )
            assert str(site.venv) in out, f"sync was not imported from the new virtualenv: {out}"
        with site.step("guide step 8 (runserver answers GET /healthz)"):
            site.start_server()
        yield site
    finally:
        site.stop_server()
        try:
            site.drop_database()
        finally:
            if os.environ.get("ADOPTION_KEEP") == "1":
                say(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
        say("torn down")


# --- one device user's day, in order -----------------------------------------------


@dataclass
class Day:
    """What the tests hand on to each other."""

    api: Api | None = None  # device A's
    user_id: int | None = None
    device_a: str = ""
    device_b: str = ""
    job: str = ""
    cursor: str = ""
    log_offset: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    conflict_id: str = ""
    admin: urllib.request.OpenerDirector | None = None  # staff's session, logged in
    done: set[str] = field(default_factory=set)

    def need(self, *steps: str) -> None:
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.skip(f"needs the earlier test(s) {missing}, which did not pass")


@pytest.fixture(scope="module")
def day() -> Day:
    return Day()


def latest(changes: list[dict[str, Any]], object_id: str) -> dict[str, Any]:
    mine = [c for c in changes if c["id"] == object_id]
    assert mine, f"the pull did not bring {object_id}; it brought {changes}"
    return mine[-1]


def pull_sees(site: Site, day: Day, expect: dict[str, tuple[int, dict[str, Any]]]) -> None:
    """Device A pulls from its cursor: exactly these objects, at these versions and values."""
    assert day.api is not None
    changes, cursor = day.api.pull_all(day.cursor)
    got = {c["id"] for c in changes}
    assert got == set(expect), f"pulled {sorted(got)}, expected {sorted(expect)}: {changes}"
    for object_id, (version, values) in expect.items():
        change = latest(changes, object_id)
        assert change["model"] == JOB and change["op"] == "upsert", change
        assert change["version"] == version, (
            f"{object_id} at version {change['version']}, expected {version}: {change}"
        )
        for key, value in values.items():
            assert change["data"][key] == value, (
                f"{object_id}.{key} is {change['data'][key]!r}, expected {value!r}: {change}"
            )
        day.versions[object_id] = version
    day.cursor = cursor


def test_a_device_logs_in_registers_pushes_and_pulls(site: Site, day: Day) -> None:
    api = Api(site.base)
    with site.step("guide step 8 (POST /api/v1/auth/token/)"):
        body = api.call("POST", "/api/v1/auth/token/", {"username": USER, "password": PASSWORD})
        assert re.fullmatch(r"[0-9a-f]{64}", body.get("token", "")), body
        api.token = body["token"]
    with site.step("guide step 8 (POST /api/v1/devices/, two devices with push tokens)"):
        day.device_a, day.device_b = str(uuid.uuid4()), str(uuid.uuid4())
        for device, push_token in ((day.device_a, "tok-a"), (day.device_b, "tok-b")):
            body = api.call(
                "POST",
                "/api/v1/devices/",
                {"id": device, "platform": "android", "push_token": f"{push_token}-{device}"},
                expect=201,
            )
            assert body["id"] == device and body["push_active"] is True, body
        api.device = day.device_a
        day.api = api
    with site.step("guide step 8 (device A pushes a create of jobs.job)"):
        day.job = str(uuid.uuid4())
        day.log_offset = site.log_size()
        [result] = api.push(create(day.job, title="Fix the boiler", status="open"))
        assert result["status"] == "applied" and result["version"] == 1, result
        assert result["data"]["title"] == "Fix the boiler", result
        day.user_id = result["data"]["owner"]
        assert isinstance(day.user_id, int), result
    with site.step("guide step 8 (device A pulls and gets the job)"):
        changes, day.cursor = api.pull_all()
        change = latest(changes, day.job)
        assert (change["model"], change["op"], change["version"]) == (JOB, "upsert", 1), change
        assert change["data"]["title"] == "Fix the boiler" and change["data"]["status"] == "open"
        day.versions[day.job] = 1
    day.done.add("device")


def test_a_push_wakes_the_users_other_device(site: Site, day: Day) -> None:
    day.need("device")
    with site.step(
        f"guide step 9 (a push from device A wakes device B: {PUSH_LINE!r} in the server log)"
    ):
        deadline = time.monotonic() + 10
        while True:
            lines = [
                line
                for line in site.log_since(day.log_offset).splitlines()
                if PUSH_LINE in line and day.device_b in line
            ]
            if lines or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert lines, (
            f"no line with {PUSH_LINE!r} and device B ({day.device_b}) in the server's output "
            f"within 10 s of device A's push\n{wakeup_diagnosis(site)}"
        )
        say(f"    {lines[0].strip()[:200]}")


def wakeup_diagnosis(site: Site) -> str:
    """Whether the wake-up went out unseen or not at all (for the failure message only)."""
    code = (
        "import logging\n"
        "from django.conf import settings\n"
        "from devices.models import PushOutbox\n"
        "print('DIAGNOSIS wake-ups left in the outbox (unsent):', PushOutbox.objects.count(),\n"
        "      '| PUSH_BACKEND setting:', getattr(settings, 'PUSH_BACKEND', '(unset)'),\n"
        "      '| devices.push logs INFO:', logging.getLogger('devices.push').isEnabledFor(20),\n"
        "      '| root handlers:', logging.getLogger().handlers)\n"
    )
    try:
        out = site.shell(code)
    except AssertionError as exc:
        return f"(no diagnosis: {exc})"
    found = [line for line in out.splitlines() if line.startswith("DIAGNOSIS")]
    return found[0] if found else f"(no diagnosis in {out!r})"


def test_server_side_writes_reach_the_device(site: Site, day: Day) -> None:
    day.need("device")
    job = day.job
    get = f"from jobs.models import Job\njob = Job.objects.get(pk={job!r})\n"

    with site.step("README: server-side save() reaches devices (version 2)"):
        site.shell(get + "job.title = 'Server title (save)'\njob.save()\n")
        pull_sees(site, day, {job: (2, {"title": "Server title (save)", "status": "open"})})

    with site.step("README: server-side QuerySet.update() reaches devices (version 3)"):
        site.shell(
            "from jobs.models import Job\n"
            f"Job.objects.filter(pk={job!r}).update(status='scheduled')\n"
        )
        pull_sees(site, day, {job: (3, {"title": "Server title (save)", "status": "scheduled"})})

    with site.step("README: server-side bulk_create reaches devices (each at version 1)"):
        bulk = [str(uuid.uuid4()), str(uuid.uuid4())]
        site.shell(
            "from django.contrib.auth import get_user_model\nfrom jobs.models import Job\n"
            f"owner = get_user_model().objects.get(username={USER!r})\n"
            "Job.objects.bulk_create(["
            + ", ".join(f"Job(id={b!r}, owner=owner, title='Bulk {i}')" for i, b in enumerate(bulk))
            + "])\n"
        )
        # Owned by the device's user (the owner the create's result named).
        expected: dict[str, tuple[int, dict[str, Any]]] = {
            b: (1, {"title": f"Bulk {i}", "status": "open", "owner": day.user_id})
            for i, b in enumerate(bulk)
        }
        pull_sees(site, day, expected)

    with site.step("README: raw SQL (connection.cursor()) reaches devices (version 4)"):
        site.shell(  # a parametrised query, in the project's shell
            "from django.db import connection\n"  # noqa: S608
            "with connection.cursor() as cursor:\n"
            "    cursor.execute('UPDATE jobs_job SET title = %s WHERE id = %s', "
            f"['Server title (raw SQL)', {job!r}])\n"
            "    assert cursor.rowcount == 1, cursor.rowcount\n"
        )
        pull_sees(site, day, {job: (4, {"title": "Server title (raw SQL)", "status": "scheduled"})})
    day.done.add("server writes")


def test_a_stale_edit_is_a_conflict_that_staff_resolve_in_the_admin(site: Site, day: Day) -> None:
    day.need("device", "server writes")
    assert day.api is not None
    job = day.job
    with site.step(
        "protocol: device A's stale title edit (base_version 3, before the raw SQL title): conflict"
    ):
        [result] = day.api.push(update(job, 3, title="Client title"))
        assert result["status"] == "conflict" and result["conflict_id"], result
        assert result["version"] == 4 and result["data"]["title"] == "Server title (raw SQL)", (
            result
        )
        day.conflict_id = result["conflict_id"]
        conflict = day.api.call("GET", f"/api/v1/sync/conflicts/{day.conflict_id}/")
        assert conflict["status"] == "open" and conflict["fields"] == ["title"], conflict

    cookies = http.cookiejar.CookieJar()
    admin = _opener(cookies)

    def form_post(path: str, values: dict[str, str]) -> tuple[int, Any, str]:
        return http_request(
            admin,
            "POST",
            site.base + path,
            data=urllib.parse.urlencode(values).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    queue = "/admin/sync/conflict/"
    page = f"/admin/sync/conflict/{day.conflict_id}/change/"
    with site.step("guide step 10 (staff log into the admin)"):
        status, _, html = http_request(admin, "GET", site.base + "/admin/login/")
        assert status == 200, f"GET /admin/login/ answered {status}: {html[:1500]}"
        status, headers, html = form_post(
            "/admin/login/?next=/admin/",
            {
                "csrfmiddlewaretoken": csrf_token_of(html),
                "username": STAFF,
                "password": PASSWORD,
                "next": "/admin/",
            },
        )
        assert status == 302 and headers["Location"] == "/admin/", (
            f"the login answered {status} {headers.get('Location')}: {html[:1500]}"
        )

    with site.step(f"guide step 10 (the queue at {queue} lists the conflict)"):
        status, _, html = http_request(admin, "GET", site.base + queue)
        assert status == 200, f"GET {queue} answered {status}: {html[:1500]}"
        assert page in html, f"the queue has no link to {page}"

    with site.step("guide step 10 (the resolve page shows the job, server and client titles)"):
        status, _, html = http_request(admin, "GET", site.base + page)
        assert status == 200, f"GET {page} answered {status}: {html[:3000]}"
        for shown in (JOB, job[:8], "Server title (raw SQL)", "Client title"):
            assert shown in html, f"the resolve page does not show {shown!r}"
        match = re.search(r'name="expected_version" value="(\d+)"', html)
        assert match and match.group(1) == "4", (
            f"expected_version on the page: {match and match.group(1)}"
        )

    with site.step("guide step 10 (staff take the client's value)"):
        status, headers, html = form_post(
            page,
            {
                "csrfmiddlewaretoken": csrf_token_of(html),
                "action": "client",
                "expected_version": "4",
            },
        )
        assert status == 302 and headers["Location"] == queue, (
            f"the resolution answered {status} {headers.get('Location')}: {html[:3000]}"
        )

    with site.step(
        "guide step 10 (the API says resolved; device A pulls the client's title at version 5)"
    ):
        conflict = day.api.call("GET", f"/api/v1/sync/conflicts/{day.conflict_id}/")
        assert conflict["status"] == "resolved", conflict
        assert conflict["resolved_version"] == 5 and conflict["resolved_by"] == STAFF, conflict
        pull_sees(site, day, {job: (5, {"title": "Client title", "status": "scheduled"})})
    day.admin = admin
    day.done.add("conflict")


def test_a_staff_edit_in_the_synced_admin_reaches_the_device(site: Site, day: Day) -> None:
    day.need("device", "conflict")
    admin = day.admin
    assert admin is not None
    change = f"/admin/jobs/job/{day.job}/change/"
    with site.step("guide step 5 (SyncedModelAdmin: staff edit a job's status in the admin)"):
        status, _, html = http_request(admin, "GET", site.base + change)
        assert status == 200, f"GET {change} answered {status}: {html[:3000]}"
        reader = FormReader("job_form")
        reader.feed(html)
        values = reader.values
        assert values.get("title") == "Client title" and "status" in values, values
        values.update(status="done", _save="Save")
        status, headers, html = http_request(
            admin,
            "POST",
            site.base + change,
            data=urllib.parse.urlencode(values).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        errors = re.findall(r'class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
        assert status == 302, (
            f"saving the change form answered {status}; errors {errors}: {html[:2000]}"
        )
    with site.step("guide step 5 (device A pulls the staff edit at version 6)"):
        pull_sees(site, day, {day.job: (6, {"title": "Client title", "status": "done"})})
    day.done.add("admin edit")
