"""`hyperfleet dashboard`: a live web page of the experiments in a MongoDB, and a JSON API under the
same paths (app.py lists it). The monitor can serve it too (``hyperfleet monitor --dashboard-port``).
Needs the ``dashboard`` extra (starlette, uvicorn)."""
