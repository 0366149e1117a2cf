"""A running facelabel for integration tests: real web server, real Celery worker and beat
processes, and either the embedded defaults (SQLite file + filesystem broker) or real
PostgreSQL + Redis."""

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.getenv("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.getenv("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
REQUIRED = os.getenv("FACELABEL_REQUIRE_SERVICES", "") in {"1", "true", "yes"}
# Seconds an HTTP request of the tests may wait for its answer: a loaded 2-core CI box (a worker
# importing TensorFlow, PBKDF2 at login) can take several seconds for one page.
HTTP_TIMEOUT = 30


def need(available: bool, what: str) -> None:
    """Skip with a clear message where a service is absent; fail in CI, where it is required."""
    if available:
        return
    message = f"{what} is not available"
    if REQUIRED:
        pytest.fail(f"{message}, and FACELABEL_REQUIRE_SERVICES=1 makes it required")
    pytest.skip(f"{message}: integration test skipped (set FACELABEL_REQUIRE_SERVICES=1 to require it)")


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping())
    except Exception:  # noqa: BLE001
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bound_socket() -> socket.socket:
    """A loopback socket bound to a port of the kernel's choosing and kept bound, so nothing can
    take the port between choosing it and serving on it (free_port() leaves that window open)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


class Stack:
    def __init__(self, tmp_path: Path, backend: str, model_file: Path, extra_env: dict | None = None):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_path
        self.backend = backend
        self.processes: dict[str, subprocess.Popen] = {}
        # The web server inherits this very socket (gunicorn's fd://), so the port stays ours.
        self.listener: socket.socket | None = bound_socket()
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FACELABEL_VAR_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "integration-tests",
            "LABEL_CLAIM_TIMEOUT": "3",
            "RECOVERY_INTERVAL": "2",
            "LABEL_CHUNK_SIZE": "8",
            "INFERENCE_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(extra_env or {}),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        if backend == "services":
            self.database = f"facelabel_it_{uuid.uuid4().hex[:10]}"
            self._admin_sql(f'CREATE DATABASE "{self.database}"')
            self.env["DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + self.database
            self.env["CELERY_BROKER_URL"] = REDIS_URL
            import redis

            redis.Redis.from_url(REDIS_URL).flushdb()
        else:
            self.env.pop("DATABASE_URL", None)
            self.env.pop("CELERY_BROKER_URL", None)
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("collectstatic", "--noinput", "-v", "0")
        self.manage(
            "register_model",
            "--name",
            "tiny",
            "--file",
            str(model_file),
            "--input-size",
            "48",
            "--grayscale",
            "--preprocessing",
            "minus_one_one",
            "--activate",
        )

    # processes -------------------------------------------------------------------------------

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def create_user(self, username: str, password: str) -> None:
        code = (
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({username!r}, password={password!r})"
        )
        self.manage("shell", "-c", code)

    def _spawn(self, name: str, args: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        # A session of its own, so SIGKILL can take the whole process group (parent + pool child).
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        self.processes[name] = process
        return process

    def start_web(self) -> None:
        if self.listener is None:  # started again after a kill: a new port of its own
            self.listener = bound_socket()
            self.port = self.listener.getsockname()[1]
            self.url = f"http://127.0.0.1:{self.port}"
        listener = self.listener.fileno()
        self._spawn(
            "web",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "facelabel.wsgi",
                "--bind",
                f"fd://{listener}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "120",
            ],
            pass_fds=(listener,),
        )
        self.listener.close()  # gunicorn holds it now
        self.listener = None
        self.wait_for(lambda: self._up(), 120, "the web server to start")

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "facelabel",
                "worker",
                "-Q",
                "inference,exports,default",
                "-n",
                f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "--concurrency",
                "1",
                "--prefetch-multiplier",
                "1",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        )

    def start_beat(self, name: str = "beat") -> None:
        self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "facelabel",
                "beat",
                "--loglevel",
                "INFO",
            ],
        )

    def freeze(self, name: str) -> None:
        """Stop a process group where it is (SIGSTOP) and return once every process of it has
        stopped: a signal is delivered asynchronously, and a process still running on the other
        core could change what the database shows after we looked."""
        group = self.processes[name].pid
        os.killpg(group, signal.SIGSTOP)
        self.wait_for(lambda: _group_stopped(group), 30, f"{name} to stop", interval=0.01)

    def thaw(self, name: str) -> None:
        os.killpg(self.processes[name].pid, signal.SIGCONT)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
        for process in self.processes.values():
            try:
                # The main process only: it stops its children itself. A Celery pool child
                # terminated under the worker left it waiting 20 s for a task that never ended.
                process.terminate()
                os.killpg(process.pid, signal.SIGCONT)  # a frozen group would never see the TERM
            except ProcessLookupError:
                continue
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the group
            process.wait(timeout=30)
        self.processes.clear()
        if self.backend == "services":
            self._admin_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def logs(self) -> str:
        return "\n".join(
            f"----- {log.name} -----\n{log.read_text(errors='replace')[-6000:]}"
            for log in sorted(self.tmp.glob("*.log"))
        )

    def log_count(self, name: str, pattern: str) -> int:
        """How many lines of a process's log match a regular expression: how often a beat sent a
        task, how many runs of a task a worker finished."""
        log = self.tmp / f"{name}.log"
        if not log.exists():
            return 0
        return len(re.findall(pattern, log.read_text(errors="replace"), flags=re.MULTILINE))

    def _up(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # inspection ------------------------------------------------------------------------------

    def sql(self, query: str, params: tuple = ()) -> list[tuple]:
        if self.backend == "services":
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"]) as conn:
                return conn.execute(query.replace("?", "%s"), params).fetchall()
        with sqlite3.connect(self.tmp / "var" / "db.sqlite3", timeout=30) as conn:
            return conn.execute(query, params).fetchall()

    def sql_write(self, statement: str, params: tuple = ()) -> None:
        if self.backend == "services":
            import psycopg

            with psycopg.connect(self.env["DATABASE_URL"]) as conn:
                conn.execute(statement.replace("?", "%s"), params)
            return
        with sqlite3.connect(self.tmp / "var" / "db.sqlite3", timeout=30) as conn:
            conn.execute(statement, params)

    def _admin_sql(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(statement)

    def wait_for(self, condition, timeout: float, what: str, interval: float = 0.25):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{self.logs()}")

    # the web client ----------------------------------------------------------------------------

    def login(self, username: str, password: str) -> requests.Session:
        session = requests.Session()
        session.get(f"{self.url}/login/", timeout=HTTP_TIMEOUT)
        response = session.post(
            f"{self.url}/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": session.cookies["csrftoken"],
            },
            headers={"Referer": f"{self.url}/login/"},
            timeout=HTTP_TIMEOUT,
        )
        assert response.url.rstrip("/") == self.url, "login failed"
        session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": self.url})
        return session

    def progress(self, session: requests.Session, project_id: int, batch_id: int) -> dict:
        response = session.get(
            f"{self.url}/projects/{project_id}/batches/{batch_id}/progress/", timeout=HTTP_TIMEOUT
        )
        return json.loads(response.text)


def _group_stopped(group: int) -> bool:
    """True when every thread of every process of the group is stopped (state T in /proc): the
    signal is delivered asynchronously, so a thread on the other core stops a moment later."""
    states = []
    for stat in Path("/proc").glob("[0-9]*/task/[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended while we looked
            continue
        if int(fields[2]) == group:
            states.append(fields[0])
    return all(state in {"T", "t", "Z", "X"} for state in states)
