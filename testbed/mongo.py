"""A real MongoDB wire-protocol server for the examples, benchmarks and tests, started and stopped by them.

In order of preference (``HYPERFLEET_TEST_SERVER`` picks one: ``mongod`` or ``ferretdb``):

* ``mongod`` from PATH;
* FerretDB 2 on a private PostgreSQL cluster with the DocumentDB extension, which
  ``testbed/install/test-server.sh`` (``make mongo-server``) builds: indexes, atomic findAndModify and
  SCRAM-SHA-256 logins, served by the database itself (no proxy of ours in between).

With ``tls=ServerTls(ca_file, certificate_key_file)`` it serves TLS only (mongod's ``--tlsMode requireTLS``,
FerretDB's TLS listener with its plain one off), and its URLs carry ``tls=true&tlsCAFile=``.

``python -m testbed.mongo --dbpath DIR --port N [--no-auth]`` runs one in the foreground until
SIGTERM (hyperopt's own test suite starts its servers that way).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pymongo

from . import pins
from .processes import CACHE_DIR, ManagedServer, ServerNotFound, free_port, stop_process

#: the FerretDB build of testbed/install/test-server.sh (a link to the pinned version)
FERRETDB = CACHE_DIR / "bin" / "ferretdb"
#: the PostgreSQL release of testbed/install/test-server.sh, read from the one file of pins
PG_MAJOR = pins()["PG_MAJOR"]
POSTGRES_BINDIR = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
POSTGRES_SHAREDIR = f"/usr/share/postgresql/{PG_MAJOR}"
#: the PostgreSQL extensions DocumentDB loads at start (testbed/images/test-mongo/entrypoint.sh: the same, tested)
PRELOAD = "pg_cron,pg_documentdb_core,pg_documentdb"
KINDS = ("mongod", "ferretdb")
#: the user clients log in as: mongod's root user, or the PostgreSQL cluster's superuser under FerretDB
SUPERUSER = "hyperfleet"
#: how many ports a server tries when the one it was given by free_port() is taken meanwhile
PORT_ATTEMPTS = 3


@dataclasses.dataclass(frozen=True)
class ServerTls:
    """The files of a TLS server: the CA its clients trust, and its key with its certificate (one PEM file)."""

    ca_file: str
    certificate_key_file: str


def choose_kind() -> str:
    wanted = os.environ.get("HYPERFLEET_TEST_SERVER", "auto")
    if wanted not in ("auto", *KINDS):
        raise ServerNotFound(f"HYPERFLEET_TEST_SERVER={wanted}: choose one of {', '.join(KINDS)}")
    if wanted in ("auto", "mongod") and shutil.which("mongod"):
        return "mongod"
    if wanted == "mongod":
        raise ServerNotFound("HYPERFLEET_TEST_SERVER=mongod: no mongod on PATH")
    if not FERRETDB.exists() or not os.path.exists(f"{POSTGRES_BINDIR}/postgres"):
        raise ServerNotFound(f"no MongoDB server: neither mongod on PATH nor {FERRETDB} with PostgreSQL; "
                             "run `make mongo-server`")
    return "ferretdb"


class MongoServer(ManagedServer):
    """``auth``: clients must log in as ``username``/``password`` with SCRAM-SHA-256; the URLs carry the
    credentials. mongod runs with ``--auth`` and a root user made through its localhost exception;
    FerretDB's users are PostgreSQL roles, and ``username`` is the cluster's superuser, whose password
    PostgreSQL checks. FerretDB itself reaches PostgreSQL through the cluster's private socket
    directory, where local connections are trusted."""

    def __init__(self, kind: str | None = None, auth: bool = True, data_dir: str | None = None,
                 port: int | None = None, tls: ServerTls | None = None):
        self.kind = kind or choose_kind()
        self.auth = auth
        self.tls = tls
        self.username = SUPERUSER
        self.password = secrets.token_urlsafe(18) if self.auth else None
        self.port = port or free_port()
        self._port_chosen = port is None  # by free_port(): until the first start, another may be taken
        self._own_data_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="hyperfleet-mongo-")
        self.process: subprocess.Popen | None = None  # the wire-protocol server
        self._postgres: subprocess.Popen | None = None
        self.postgres_port: int | None = None  # of the PostgreSQL cluster under FerretDB
        self._logs: list = []

    @property
    def url(self) -> str:
        return self.database_url("")

    @property
    def postgres_dsn(self) -> str:
        """libpq keywords of the PostgreSQL cluster under FerretDB, as its superuser (trusted socket)."""
        return f"host={self.data_dir} port={self.postgres_port} user={self.username} dbname=postgres"

    def database_url(self, database: str, password: str | None = None) -> str:
        """The address of ``database`` with this server's credentials (or with ``password`` instead)."""
        tls = f"tls=true&tlsCAFile={self.tls.ca_file}" if self.tls else ""
        if not self.auth:
            return f"mongodb://127.0.0.1:{self.port}/{database}" + (f"?{tls}" if tls else "")
        secret = urllib.parse.quote(password if password is not None else self.password, safe="")
        return f"mongodb://{self.username}:{secret}@127.0.0.1:{self.port}/{database}?authSource=admin" + \
            (f"&{tls}" if tls else "")

    def _spawn(self, argv: list[str], name: str, **kwargs) -> subprocess.Popen:
        log = open(os.path.join(self.data_dir, f"{name}.log"), "ab")
        self._logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, **kwargs)

    def _log_tail(self, name: str) -> str:
        with open(os.path.join(self.data_dir, f"{name}.log"), "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def start(self, timeout_seconds: float = 60.0) -> MongoServer:
        if self.kind == "ferretdb":
            self._start_postgres()
        log = os.path.join(self.data_dir, "server.log")
        for attempt in range(PORT_ATTEMPTS):
            logged = os.path.getsize(log) if os.path.exists(log) else 0
            self.process = self._spawn(self._mongod_argv() if self.kind == "mongod" else self._ferretdb_argv(), "server")
            try:
                self._wait_until_ready(timeout_seconds)
                self._port_chosen = False  # clients know it now: a restart keeps it
                return self
            except RuntimeError:
                # the port free_port() found was bound by another process before the server could (a
                # busy machine starts many servers and plugins): once more on another
                with open(log, "rb") as f:
                    f.seek(logged)
                    port_taken = b"address already in use" in f.read().lower()
                if not (port_taken and self._port_chosen and attempt + 1 < PORT_ATTEMPTS):
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _mongod_argv(self) -> list[str]:
        argv = [shutil.which("mongod"), "--dbpath", self.data_dir, "--port", str(self.port),
                "--bind_ip", "127.0.0.1", "--quiet"] + (["--auth"] if self.auth else [])
        if self.tls:
            argv += ["--tlsMode", "requireTLS", "--tlsCertificateKeyFile", self.tls.certificate_key_file]
        return argv

    def _ferretdb_argv(self) -> list[str]:
        backend = f"postgres://{self.username}@/postgres?host={urllib.parse.quote(self.data_dir)}&port={self.postgres_port}"
        # "-" turns the plain listener off: with TLS, only the TLS one answers (one file: key and certificate)
        listen = ([f"--listen-addr=127.0.0.1:{self.port}"] if not self.tls else
                  ["--listen-addr=-", f"--listen-tls=127.0.0.1:{self.port}",
                   f"--listen-tls-cert-file={self.tls.certificate_key_file}",
                   f"--listen-tls-key-file={self.tls.certificate_key_file}"])
        return [str(FERRETDB), *listen, f"--postgresql-url={backend}",
                "--telemetry=disable", f"--state-dir={self.data_dir}", "--debug-addr=-", "--log-level=warn",
                *([] if self.auth else ["--no-auth"])]

    def restart_ferretdb(self, timeout_seconds: float = 30.0) -> None:
        """Stop and start FerretDB only (its PostgreSQL keeps running): its PostgreSQL sessions end, and
        with them whatever statistics they had not reported yet (PostgreSQL reports a busy session's
        table statistics only after it idled for up to 10 s)."""
        stop_process(self.process, signal.SIGKILL)  # its sessions end all the same; SIGTERM waits seconds
        deadline = time.monotonic() + timeout_seconds
        while int(self.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                            "AND pid <> pg_backend_pid()")):
            if time.monotonic() > deadline:
                raise RuntimeError("FerretDB's PostgreSQL sessions did not end")
            time.sleep(0.02)
        self.process = self._spawn(self._ferretdb_argv(), "server")
        self._wait_until_ready(timeout_seconds)

    def _wait_until_ready(self, timeout_seconds: float) -> None:
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
                    return
                except pymongo.errors.PyMongoError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"{self.kind} did not answer in {timeout_seconds}s: {self._log_tail('server')}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def _create_mongod_user(self, deadline: float) -> None:
        """The root user, made without credentials through mongod's localhost exception (first start)."""
        tls = {"tls": True, "tlsCAFile": self.tls.ca_file} if self.tls else {}
        client = pymongo.MongoClient(f"mongodb://127.0.0.1:{self.port}/", serverSelectionTimeoutMS=500, **tls)
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
        """A private PostgreSQL cluster with DocumentDB, tuned for tests (no fsync), on a free loopback port
        and a socket in the data directory; copied from a cached template, so it starts in well under a
        second. A restart keeps the cluster, its port and its data."""
        pgdata = os.path.join(self.data_dir, "pg")
        as_user = as_postgres()
        first_start = not os.path.isdir(pgdata)
        if first_start:
            subprocess.run(["cp", "-a", cluster_template(), pgdata], check=True)
            if as_user:
                os.chown(self.data_dir, as_user["user"], as_user["group"])
            # DocumentDB connects back to its own server through the socket without a password
            with open(os.path.join(pgdata, "pg_hba.conf"), "w") as hba:
                hba.write(f"local all all trust\nhost all all 127.0.0.1/32 {'scram-sha-256' if self.auth else 'trust'}\n")
        port = self.postgres_port or free_port()
        self._postgres = self._spawn(
            [f"{POSTGRES_BINDIR}/postgres", "-D", pgdata, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
             "-c", f"unix_socket_directories={self.data_dir}",
             "-c", f"documentdb.localhost_connection_string=host={self.data_dir} port={port} dbname=postgres"],
            "postgres", cwd=self.data_dir, **as_user)
        deadline = time.monotonic() + 30
        while subprocess.run([f"{POSTGRES_BINDIR}/pg_isready", "-q", "-h", self.data_dir, "-p", str(port),
                              "-U", self.username]).returncode:
            if self._postgres.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not start: {self._log_tail('postgres')}")
            time.sleep(0.02)
        self.postgres_port = port
        if first_start and self.auth:  # on stdin: no password in any process's arguments
            self.psql(input=f"ALTER ROLE {self.username} PASSWORD '{self.password}'")
        return port

    def psql(self, sql: str | None = None, input: str | None = None) -> str:
        """Run ``sql`` (or the script ``input``) in the PostgreSQL cluster under FerretDB as its superuser:
        unaligned rows."""
        return psql(self.postgres_dsn, sql, input)

    def stop_processes(self) -> None:
        """Stop the server (FerretDB and its PostgreSQL), keeping the data: ``start()`` resumes it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a test may have frozen it
        # FerretDB keeps nothing of its own, and on SIGTERM it waits seconds for its clients: gone at once,
        # as a server that goes away is; PostgreSQL's fast shutdown (SIGINT) keeps every committed write
        stop_process(self.process, signal.SIGKILL if self.kind == "ferretdb" else signal.SIGTERM)
        stop_process(self._postgres, signal.SIGINT)

    def stop(self) -> None:
        self.stop_processes()
        for log in self._logs:
            log.close()
        if self._own_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def as_postgres() -> dict:
    """subprocess keywords that run PostgreSQL's programs as ``postgres`` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def psql(dsn: str, sql: str | None = None, input: str | None = None) -> str:
    result = subprocess.run([f"{POSTGRES_BINDIR}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                             *(["-c", sql] if sql else [])], input=input, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"psql: {result.stderr.strip()}")
    return result.stdout


#: the template cluster's initdb options: 1 MB WAL segments (not 16), so that the copy each server starts
#: from writes a 33 MB cluster, not 65
TEMPLATE_INITDB = ("-A", "trust", "-E", "UTF8", "--wal-segsize=1")
#: added to its postgresql.conf: DocumentDB's libraries; pg_cron's jobs in background workers (a job's
#: connection would go to the socket and port of the template's server, long gone); no durability and no
#: autovacuum (a test server's data is small and thrown away; an idle server's autovacuum workers and
#: pg_cron's jobs were most of its CPU: 0.95 s a minute, now 0.2)
TEMPLATE_CONF = (f"shared_preload_libraries = '{PRELOAD}'\ncron.database_name = 'postgres'\n"
                 "cron.use_background_workers = on\n"
                 "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nautovacuum = off\n"
                 "max_connections = 300\nmin_wal_size = 2MB\n")
#: run in the template once DocumentDB is created: FerretDB builds indexes in the createIndexes request
#: (documentdb_api_internal.create_indexes_non_concurrently), so the queue of concurrent index builds that
#: DocumentDB's install schedules pg_cron to poll every 2 seconds stays empty: those two jobs go
TEMPLATE_SQL = ("SELECT cron.unschedule(jobid) FROM cron.job "
                "WHERE command LIKE '%documentdb_api_internal.build_index_concurrently%'")


def cluster_template() -> str:
    """A PostgreSQL cluster with DocumentDB created and nothing else, made once per installed build of the
    extensions (``testbed/install/test-server.sh`` leaves a marker of it) and kept in the cache; servers
    start from copies of it. Its superuser has no password; the copies' pg_hba.conf decides."""
    markers = sorted(glob.glob(f"{POSTGRES_SHAREDIR}/extension/.hyperfleet-*"))
    if not markers:
        raise ServerNotFound("PostgreSQL has no DocumentDB built by hyperfleet: run `make mongo-server`")
    # the build's versions (the names), the PostgreSQL release it was made against (the contents), and how
    # the template is made
    recipe = [f"{m}={Path(m).read_text()}" for m in markers] + [" ".join(TEMPLATE_INITDB), TEMPLATE_CONF, TEMPLATE_SQL]
    key = hashlib.sha256("\n".join(recipe).encode()).hexdigest()[:16]
    template = CACHE_DIR / "pg-template" / key
    if template.is_dir():
        return str(template)
    template.parent.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="hyperfleet-template-")  # where postgres may write (not in root's home)
    as_user = as_postgres()
    if as_user:
        os.chown(work, as_user["user"], as_user["group"])
    pgdata = os.path.join(work, "pg")
    subprocess.run([f"{POSTGRES_BINDIR}/initdb", "-D", pgdata, *TEMPLATE_INITDB, "-U", SUPERUSER],
                   check=True, capture_output=True, cwd=work, **as_user)
    with open(os.path.join(pgdata, "postgresql.conf"), "a") as conf:
        conf.write(TEMPLATE_CONF)
    port = free_port()
    pg_ctl = [f"{POSTGRES_BINDIR}/pg_ctl", "-D", pgdata, "-w", "-o",
              f"-p {port} -c listen_addresses='' -c unix_socket_directories={work}"]
    subprocess.run([*pg_ctl, "-l", os.path.join(work, "log"), "start"], check=True, capture_output=True, cwd=work, **as_user)
    try:
        dsn = f"host={work} port={port} user={SUPERUSER} dbname=postgres"
        psql(dsn, "CREATE EXTENSION documentdb CASCADE")
        psql(dsn, TEMPLATE_SQL)
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], check=True, capture_output=True, cwd=work, **as_user)
    # after a clean stop the WAL holds nothing to replay: one empty segment is left of the extension's 14
    subprocess.run([f"{POSTGRES_BINDIR}/pg_resetwal", "-D", pgdata], check=True, capture_output=True, cwd=work, **as_user)
    staged = tempfile.mkdtemp(prefix="template-", dir=template.parent)
    subprocess.run(["cp", "-a", pgdata, staged], check=True)
    shutil.rmtree(work, ignore_errors=True)
    try:
        os.rename(os.path.join(staged, "pg"), template)
    except OSError:  # another process made it meanwhile
        if not template.is_dir():
            raise
    shutil.rmtree(staged, ignore_errors=True)
    return str(template)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m testbed.mongo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dbpath", required=True, help="the server's data directory (kept)")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--no-auth", action="store_true", help="no users: any client may do anything")
    args = parser.parse_args()
    server = MongoServer(auth=not args.no_auth, data_dir=os.path.abspath(args.dbpath), port=args.port)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    with server:
        print(f"{server.kind} ready on 127.0.0.1:{server.port}", flush=True)
        while not stopping and server.process.poll() is None:
            time.sleep(0.2)


if __name__ == "__main__":
    main()
