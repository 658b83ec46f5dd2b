"""The test database server itself (testbed/mongo.py): what the tests rely on when the machine is busy."""

import os
import socket

import pymongo

import testbed.mongo
from testbed.mongo import MongoServer


def server_log(server: MongoServer) -> str:
    with open(os.path.join(server.data_dir, "server.log")) as f:
        return f.read().lower()


def test_a_server_whose_port_is_taken_before_it_binds_starts_on_another(monkeypatch):
    """free_port() finds a port free, but another process may bind it before the server does (many servers
    and plugins start at once in make test): the server starts again on a port of its own."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = testbed.mongo.free_port
        monkeypatch.setattr(testbed.mongo, "free_port", lambda: next(ports, None) or real_free_port())
        with MongoServer() as server:
            assert server.port != taken
            with pymongo.MongoClient(server.url, serverSelectionTimeoutMS=10_000) as client:
                assert client.admin.command("ping")["ok"] == 1
            assert server_log(server).count("address already in use") == 1


def test_a_port_the_caller_chose_is_not_swapped_for_another():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        server = MongoServer(port=taken)
        try:
            try:
                server.start(timeout_seconds=20)
            except RuntimeError:
                assert server.port == taken
                assert server_log(server).count("address already in use") == 1
            else:
                raise AssertionError(f"started on {server.port}, though {taken} was taken")
        finally:
            server.stop()
