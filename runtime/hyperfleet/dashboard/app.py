"""The dashboard's web app: one page (static/) that reads a JSON API, both served by Starlette.

Why Starlette (with uvicorn as its server): a small, well-kept ASGI toolkit with routing, JSON
responses and static files and nothing else, no template engine or ORM we would not use; uvicorn is
its production server and runs in a thread of the monitor as well as on its own.

The API (all JSON; the page uses nothing else):

====================================================  ==========================================
GET    /api/config                                     ``{actions, read_token}``: is a token configured,
                                                       do reads need it (always open: no data)
GET    /api/experiments                                every experiment's counts, best, rate, ETA
GET    /api/experiments/{key}                          its summary and every finished trial (plots)
GET    /api/experiments/{key}/trials                   a page of the table: ``state``, ``param`` +
                                                       ``min``/``max``, ``sort`` (tid, state, loss,
                                                       book_time, refresh_time, param:NAME),
                                                       ``order`` (asc, desc), ``offset``, ``limit``
GET    /api/experiments/{key}/curves                   learning curves (loss by step) of the last
                                                       ``limit`` trials (500), pruned ones marked
GET    /api/experiments/{key}/trials/{tid}             parameters, result, error, traceback, history
GET    /api/experiments/{key}/trials/{tid}/attachments/{name}   a page of it as text: ``offset``, ``limit``
POST   /api/experiments/{key}/cancel                   queued trials become CANCEL, the driver stops
POST   /api/experiments/{key}/trials/{tid}/requeue     a failed trial is queued again
DELETE /api/experiments/{key}                          the experiment, its trials and attachments
====================================================  ==========================================

Actions (POST, DELETE) need ``Authorization: Bearer TOKEN``. Without a configured token they are off
(403); a missing or wrong token is 401. With ``read_token`` every other ``/api/`` call (what the page
shows) needs the token too (401 without it); the page itself and ``/api/config`` hold no data and stay
open, so the page can ask for the token.
"""

from __future__ import annotations

import contextlib
import hmac
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..store import JobStore
from . import data

STATIC = Path(__file__).parent / "static"


class ReadTokenWithoutToken(ValueError):
    """Reads are to need the token, and there is none."""


def create_app(store: JobStore, token: str | None = None, refresh_seconds: float = 1.0,
               preload: bool = True, read_token: bool = False) -> Starlette:
    """The app over ``store``; its cache of the experiments is refreshed in a thread (and, with
    ``preload``, loaded here first) until the server serving it shuts down. ``read_token``: reads
    need ``token`` too."""
    if read_token and not token:
        raise ReadTokenWithoutToken("reads are to need the dashboard's token, and none is configured")
    cache = data.Experiments(store, refresh_seconds=refresh_seconds).start(preload=preload)

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def refused() -> JSONResponse:
        return JSONResponse({"error": "a valid token is needed (Authorization: Bearer TOKEN)"}, 401)

    def guarded(action):
        async def endpoint(request: Request):
            if not token:
                return JSONResponse({"error": "actions are off: the dashboard has no token configured"}, 403)
            if not authorized(request):
                return refused()
            return await answered(action)(request)
        return endpoint

    def read(fn):
        """A read of the experiments: with read_token, only with the token."""
        answer = answered(fn)
        if not read_token:
            return answer

        async def endpoint(request: Request):
            return await answer(request) if authorized(request) else refused()
        return endpoint

    def answered(fn):
        async def endpoint(request: Request):
            from starlette.concurrency import run_in_threadpool

            try:
                return JSONResponse(await run_in_threadpool(fn, request))
            except data.NotFound as err:
                return JSONResponse({"error": str(err)}, 404)
            except data.BadRequest as err:
                return JSONResponse({"error": str(err)}, 400)
        return endpoint

    def key(request: Request) -> str:
        return request.path_params["key"]

    def tid(request: Request) -> int:
        return request.path_params["tid"]

    def query_number(request: Request, name: str, kind=float, default=None):
        value = request.query_params.get(name)
        if value in (None, ""):
            return default
        try:
            return kind(value)
        except ValueError:
            raise data.BadRequest(f"{name}: not a number: {value!r}") from None

    def trials(request: Request):
        q = request.query_params
        return data.trials(cache, key(request), state=q.get("state") or None, param=q.get("param") or None,
                           low=query_number(request, "min"), high=query_number(request, "max"),
                           sort=q.get("sort", "tid"), descending=q.get("order") == "desc",
                           offset=query_number(request, "offset", int, 0), limit=query_number(request, "limit", int, 100))

    def attachment(request: Request):
        return data.attachment(cache, key(request), tid(request), request.path_params["name"],
                               offset=query_number(request, "offset", int, 0),
                               limit=query_number(request, "limit", int, data.LOG_PAGE_BYTES))

    async def index(_request: Request):
        return FileResponse(STATIC / "index.html")

    routes = [
        Route("/", index),
        Route("/api/config", answered(lambda r: {"actions": bool(token), "read_token": read_token})),
        Route("/api/experiments", read(lambda r: data.experiments(cache))),
        Route("/api/experiments/{key}", read(lambda r: data.experiment(cache, key(r)))),
        Route("/api/experiments/{key}", guarded(lambda r: data.delete(cache, key(r))), methods=["DELETE"]),
        Route("/api/experiments/{key}/cancel", guarded(lambda r: data.cancel(cache, key(r))), methods=["POST"]),
        Route("/api/experiments/{key}/trials", read(trials)),
        Route("/api/experiments/{key}/curves", read(lambda r: data.curves(
            cache, key(r), limit=query_number(r, "limit", int, data.CURVES_TRIALS)))),
        Route("/api/experiments/{key}/trials/{tid:int}", read(lambda r: data.trial(cache, key(r), tid(r)))),
        Route("/api/experiments/{key}/trials/{tid:int}/requeue",
              guarded(lambda r: data.requeue(cache, key(r), tid(r))), methods=["POST"]),
        Route("/api/experiments/{key}/trials/{tid:int}/attachments/{name}", read(attachment)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        cache.stop()  # a server stopped in a process that goes on (the monitor's) leaves no refresh behind
    return Starlette(routes=routes, lifespan=lifespan)


def serve(store: JobStore, host: str, port: int, token: str | None = None, in_thread: bool = False,
          read_token: bool = False):
    """Serve the dashboard with uvicorn: here until stopped, or in a daemon thread (the monitor's);
    returns the uvicorn Server (``should_exit = True`` stops it). ReadTokenWithoutToken before anything
    is served when ``read_token`` has no ``token``."""
    import threading

    import uvicorn

    # in the monitor's thread: the monitor's own start does not wait for the dashboard's first load
    app = create_app(store, token, preload=not in_thread, read_token=read_token)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    if in_thread:
        threading.Thread(target=server.run, name="hyperfleet-dashboard", daemon=True).start()
    else:
        server.run()
    return server
