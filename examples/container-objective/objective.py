"""A container objective in plain Python with no hyperfleet inside: the contract is two files.

Reads the trial's parameters from $HYPERFLEET_PARAMS (/hyperfleet/params.json), writes
{"loss": ..., "status": "ok"} to $HYPERFLEET_LOSS (/hyperfleet/loss.json) and a small artefact into
$HYPERFLEET_OUT (/hyperfleet/out/). Any language can do the same.

While it runs it reports a learning curve, for pruning: STEPS lines (environment, default 0), one
every STEP_SECONDS, each its mark ($HYPERFLEET_PROGRESS_MARK, "hyperfleet-progress:") and
{"step": N, "loss": X}, the loss falling to the final one. A trial the experiment's pruning rule stops
is removed by the worker on the spot.

On a GPU (docs/gpus.md) the result also says which GPU the container was given: ``gpus``, the toolkit's
NVIDIA_VISIBLE_DEVICES (the host's numbering), and ``nvidia-smi -L`` goes to the log when present.

MODE (environment) lets the tests play a broken trainer: "no-loss" exits 0 without loss.json,
"crash" exits 3, "hang" sleeps past any timeout. SLEEP_SECONDS makes a good trial take that long.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import time

params = json.load(open(os.environ.get("HYPERFLEET_PARAMS", "/hyperfleet/params.json")))
print(f"trial {os.environ.get('HYPERFLEET_TRIAL_ID')}: params {json.dumps(params, sort_keys=True)}", flush=True)
gpus = os.environ.get("NVIDIA_VISIBLE_DEVICES")
if gpus and shutil.which("nvidia-smi"):  # what only a real GPU host shows: the GPU's name and UUID
    subprocess.run(["nvidia-smi", "-L"], check=False)
mode = os.environ.get("MODE", "ok")
time.sleep(float(os.environ.get("SLEEP_SECONDS", "0")))
if mode == "hang":
    time.sleep(3600)
if mode == "crash":
    print("training diverged: loss is nan", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "no-loss":
    print("finished without writing a loss (a bug in the trainer)", flush=True)
    sys.exit(0)

x, y = params["x"], params["y"]
b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
loss = (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10
steps = int(os.environ.get("STEPS", "0"))
mark = os.environ.get("HYPERFLEET_PROGRESS_MARK", "hyperfleet-progress:")
for step in range(steps):
    time.sleep(float(os.environ.get("STEP_SECONDS", "0")))
    print(mark, json.dumps({"step": step, "loss": loss + 5 * (steps - 1 - step) / steps}), flush=True)
out = os.environ.get("HYPERFLEET_OUT", "/hyperfleet/out")
with open(os.path.join(out, "curve.txt"), "w") as f:
    f.write(f"{x} {y} {loss}\n")
with open(os.environ.get("HYPERFLEET_LOSS", "/hyperfleet/loss.json"), "w") as f:
    json.dump({"loss": loss, "status": "ok", "branin_x": x, **({"gpus": gpus} if gpus else {})}, f)
print(f"loss {loss:.6f}", flush=True)
