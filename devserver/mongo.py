"""A real MongoDB wire-protocol server for the examples, benchmarks and tests, started and stopped by them.

In order of preference (``HYPERFLEET_TEST_SERVER`` picks one: ``mongod``, ``ferretdb-postgresql``,
``ferretdb-sqlite``):

* ``mongod`` from PATH;
* FerretDB on a private PostgreSQL cluster: the FerretDB test server that
  ``scripts/install-test-server.sh`` builds into ``$HYPERFLEET_CACHE/bin``, and Debian's PostgreSQL.
  PostgreSQL lets FerretDB run filters in the database (SQLite only looks up ``_id``), so queries on
  ``state`` cost what they cost on mongod instead of a scan of the whole collection;
* FerretDB on SQLite, when no PostgreSQL is installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import pymongo

from .processes import CACHE_DIR, ManagedServer, ServerNotFound, free_port, stop_process

FERRETDB = CACHE_DIR / "bin" / "hyperfleet-ferretdb"


def postgres_bindir() -> str | None:
    if shutil.which("postgres") and shutil.which("initdb"):
        return os.path.dirname(os.path.realpath(shutil.which("postgres")))
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def choose_kind() -> str:
    wanted = os.environ.get("HYPERFLEET_TEST_SERVER", "auto")
    if wanted in ("auto", "mongod") and shutil.which("mongod"):
        return "mongod"
    if wanted in ("auto", "ferretdb-postgresql", "ferretdb-sqlite") and not FERRETDB.exists():
        raise ServerNotFound(f"no MongoDB server: neither mongod on PATH nor {FERRETDB}; run `make mongo-server`")
    if wanted in ("auto", "ferretdb-postgresql") and postgres_bindir():
        return "ferretdb-postgresql"
    if wanted in ("auto", "ferretdb-sqlite"):
        return "ferretdb-sqlite"
    raise ServerNotFound(f"HYPERFLEET_TEST_SERVER={wanted}: that server is not installed here")


class MongoServer(ManagedServer):
    """``auth``: clients must log in as ``username``/``password``; the URLs carry the credentials.
    On FerretDB with PostgreSQL they log in with ``authMechanism=PLAIN``: FerretDB v1 hands the
    credentials to PostgreSQL, whose cluster here requires scram-sha-256 passwords, so a wrong password
    is refused. mongod runs with ``--auth`` and a root user made through its localhost exception
    (SCRAM). FerretDB on SQLite has no users: no auth there."""

    def __init__(self, kind: str | None = None, auth: bool = True):
        self.kind = kind or choose_kind()
        self.auth = auth and self.kind in ("ferretdb-postgresql", "mongod")
        self.username = "postgres" if self.kind == "ferretdb-postgresql" else "hyperfleet"
        self.password = secrets.token_urlsafe(18) if self.auth else None
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="hyperfleet-mongo-")
        self.process: subprocess.Popen | None = None  # the wire-protocol server
        self._postgres: subprocess.Popen | None = None
        self.postgres_port: int | None = None  # of the PostgreSQL cluster under FerretDB, if any
        self._logs: list = []

    @property
    def url(self) -> str:
        return self.database_url("")

    def database_url(self, database: str, password: str | None = None) -> str:
        """The address of ``database`` with this server's credentials (or with ``password`` instead)."""
        if not self.auth:
            return f"mongodb://127.0.0.1:{self.port}/{database}"
        secret = urllib.parse.quote(password if password is not None else self.password, safe="")
        options = "authMechanism=PLAIN" if self.kind == "ferretdb-postgresql" else "authSource=admin"
        return f"mongodb://{self.username}:{secret}@127.0.0.1:{self.port}/{database}?{options}"

    def _spawn(self, argv: list[str], name: str, **kwargs) -> subprocess.Popen:
        log = open(os.path.join(self.data_dir, f"{name}.log"), "wb")
        self._logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kwargs)

    def _log_tail(self, name: str) -> str:
        with open(os.path.join(self.data_dir, f"{name}.log"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def start(self, timeout_seconds: float = 60.0) -> MongoServer:
        if self.kind == "mongod":
            argv = [shutil.which("mongod"), "--dbpath", self.data_dir, "--port", str(self.port),
                    "--bind_ip", "127.0.0.1", "--quiet"] + (["--auth"] if self.auth else [])
        elif self.kind == "ferretdb-postgresql":
            # with auth, no user in the URL: FerretDB connects to PostgreSQL with each client's credentials
            user = "" if self.auth else f"{self.username}@"
            argv = [str(FERRETDB), f"--listen-addr=127.0.0.1:{self.port}",
                    f"--postgresql-url=postgres://{user}127.0.0.1:{self._start_postgres()}/postgres"]
        else:
            argv = [str(FERRETDB), f"--listen-addr=127.0.0.1:{self.port}", f"--sqlite-url=file:{self.data_dir}/"]
        self.process = self._spawn(argv, "server")
        deadline = time.monotonic() + timeout_seconds
        if self.kind == "mongod" and self.auth:
            self._create_mongod_user(deadline)
        client = pymongo.MongoClient(self.url, serverSelectionTimeoutMS=500)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.process.returncode}: {self._log_tail('server')}")
                try:
                    client.admin.command("ping")
                    client.admin.command("listDatabases")  # reaches the storage backend too
                    return self
                except pymongo.errors.PyMongoError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.kind} did not answer in {timeout_seconds}s: {self._log_tail('server')}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def _create_mongod_user(self, deadline: float) -> None:
        """The root user, made without credentials through mongod's localhost exception (first start)."""
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{self.port}/", serverSelectionTimeoutMS=500)
        try:
            while True:
                try:
                    client.admin.command("createUser", self.username, pwd=self.password, roles=["root"])
                    return
                except pymongo.errors.OperationFailure:
                    return  # the user exists (a restart): the exception is closed now
                except pymongo.errors.PyMongoError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"mongod did not answer: {self._log_tail('server')}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def _start_postgres(self) -> int:
        """A throwaway PostgreSQL cluster, tuned for tests (no fsync), on a free loopback port."""
        bindir = postgres_bindir()
        pgdata = os.path.join(self.data_dir, "pg")
        as_user: dict = {}
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            postgres_user = pwd.getpwnam("postgres")
            os.chown(self.data_dir, postgres_user.pw_uid, postgres_user.pw_gid)
            as_user = {"user": postgres_user.pw_uid, "group": postgres_user.pw_gid, "extra_groups": []}
        if not os.path.isdir(pgdata):  # a restart keeps the cluster and its port
            auth = ["-A", "trust"]
            if self.auth:
                pwfile = os.path.join(self.data_dir, "pgpass")
                with open(pwfile, "w") as f:
                    f.write(self.password + "\n")
                if as_user:
                    os.chown(pwfile, as_user["user"], as_user["group"])
                auth = ["-A", "scram-sha-256", f"--pwfile={pwfile}"]
            subprocess.run([f"{bindir}/initdb", "-D", pgdata, *auth, "-U", self.username, "-E", "UTF8"],
                           check=True, capture_output=True, cwd=self.data_dir, **as_user)
        port = self.postgres_port or free_port()
        self._postgres = self._spawn(
            [f"{bindir}/postgres", "-D", pgdata, "-p", str(port), "-k", self.data_dir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off"],
            "postgres", cwd=self.data_dir, **as_user,
        )
        deadline = time.monotonic() + 30
        while subprocess.run([f"{bindir}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)]).returncode != 0:
            if self._postgres.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self._log_tail('postgres')}")
            time.sleep(0.05)
        self.postgres_port = port
        return port

    def stop_processes(self) -> None:
        """Stop the server (FerretDB and its PostgreSQL), keeping the data: ``start()`` resumes it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a test may have frozen it
        stop_process(self.process, signal.SIGTERM)
        stop_process(self._postgres, signal.SIGINT)

    def stop(self) -> None:
        self.stop_processes()
        for log in self._logs:
            log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
