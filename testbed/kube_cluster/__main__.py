"""``python -m testbed.kube_cluster up|down|status|load IMAGE...``: the tests' single-node cluster
(``make cluster-up`` / ``make cluster-down``)."""

from __future__ import annotations

import sys
import time

from testbed.kube_cluster import CONTEXT, KUBECONFIG, LocalCluster


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("up", "down", "status", "load"):
        print(__doc__, file=sys.stderr)
        return 2
    cluster = LocalCluster()
    if argv[0] == "up":
        started = time.monotonic()
        cluster.up()
        print(f"local cluster up in {time.monotonic() - started:.1f} s: "
              f"kubectl --kubeconfig {KUBECONFIG} --context {CONTEXT} get pods -A")
    elif argv[0] == "down":
        cluster.down()
    elif argv[0] == "load":
        cluster.load_images(argv[1:])
    else:
        print("running" if cluster.running() else "stopped")
        return 0 if cluster.running() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
