"""The names and numbers hyperfleet's parts agree on: the runtime, the Pulumi program (infra/) and the
Helm chart. Each is written here once; the runtime and infra/ import it.

The chart can't import Python: tests/unit/test_contract.py reads its templates and values and fails
when they say otherwise. The same test fails when a value of this module is spelled out as a literal
anywhere else in runtime/hyperfleet or infra/.

Option defaults live in :mod:`hyperfleet.settings`.
"""

from __future__ import annotations

import enum


class TrialState(enum.IntEnum):
    """A trial document's ``state``: hyperopt's values (``hyperopt.base.JOB_STATE_*``; a test checks
    they agree), written here so that the CLI, the worker and the monitor start without importing
    hyperopt (about a second)."""

    NEW = 0
    RUNNING = 1
    DONE = 2
    ERROR = 3
    #: queued, then withdrawn: fmin stopped early (timeout, loss threshold, early stop) or a cancel
    CANCEL = 4


# -- environment variables --
#: the Mongo address every command reads when its own variable (``HYPERFLEET_<COMMAND>_MONGO``) is unset
MONGO_URL_ENV = "MONGO_URL"
#: prefix of the variables each command's options read: ``HYPERFLEET_<COMMAND>_<OPTION>``
COMMAND_ENV_PREFIX = "HYPERFLEET"
#: a worker's container name and Docker host, as its deployer named them (the monitor's container check)
CONTAINER_NAME_ENV = "HYPERFLEET_CONTAINER_NAME"
DOCKER_ENGINE_ENV = "HYPERFLEET_DOCKER_ENGINE"
#: a worker pod's own name, namespace and uid (downward API), and the runtime image (trial pods)
POD_NAME_ENV = "HYPERFLEET_POD_NAME"
POD_NAMESPACE_ENV = "HYPERFLEET_POD_NAMESPACE"
POD_UID_ENV = "HYPERFLEET_POD_UID"
RUNTIME_IMAGE_ENV = "HYPERFLEET_RUNTIME_IMAGE"
#: a worker pod's node (downward API spec.nodeName): where its in-process trials ran
NODE_NAME_ENV = "HYPERFLEET_NODE_NAME"
#: what the NVIDIA Container Toolkit (Docker's device requests, Kubernetes' device plugin) sets in a container
#: given GPUs: their ids as the host numbers them; and what CUDA reads to pick among the GPUs it can see
NVIDIA_VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"
CUDA_VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"


def command_env(command: str, option: str = "") -> str:
    """``HYPERFLEET_WORKER`` for ("worker"), ``HYPERFLEET_WORKER_MONGO`` for ("worker", "mongo")."""
    name = f"{COMMAND_ENV_PREFIX}_{command.upper()}"
    return f"{name}_{option.upper()}" if option else name


# -- Docker labels (containers, volumes and networks a stack makes; trial containers) --
STACK_LABEL = "hyperfleet.stack"
ROLE_LABEL = "hyperfleet.role"
EXP_KEY_LABEL = "hyperfleet.exp_key"
DOCKER_HOST_LABEL = "hyperfleet.docker_host"
TID_LABEL = "hyperfleet.tid"
OWNER_LABEL = "hyperfleet.owner"
#: the GPU a worker container is pinned to (its host's numbering); its trial containers get the same one
GPU_LABEL = "hyperfleet.gpu"
#: the roles a stack's containers have
ROLE_WORKER, ROLE_MONITOR, ROLE_MONGO, ROLE_DRIVER, ROLE_TRIAL = "worker", "monitor", "mongo", "driver", "trial"

# -- Kubernetes labels and annotations (the chart's objects, trial pods) --
K8S_STACK_LABEL = "hyperfleet.io/stack"
K8S_EXP_KEY_LABEL = "hyperfleet.io/exp-key"
K8S_OWNER_LABEL = "hyperfleet.io/owner"
K8S_WORKER_POD_LABEL = "hyperfleet.io/worker-pod"
K8S_TID_LABEL = "hyperfleet.io/tid"
K8S_PARAMS_ANNOTATION = "hyperfleet.io/params"
K8S_COMPONENT_LABEL = "app.kubernetes.io/component"

# -- GPUs --
#: a GPU as Docker's device requests, CUDA_VISIBLE_DEVICES and nvidia-smi name it: its index on the host,
#: or its UUID (GPU-…, MIG-…), which survives a reboot that renumbers the GPUs
GPU_ID_PATTERN = r"^([0-9]+|(GPU|MIG)-[0-9A-Za-z/-]+)$"
#: the extended resource NVIDIA's device plugin advertises on Kubernetes nodes (a spec's ``resources: {gpu: N}``)
K8S_GPU_RESOURCE = "nvidia.com/gpu"
#: a Kubernetes extended resource's name: a domain, a slash, a name (nvidia.com/gpu, amd.com/gpu)
EXTENDED_RESOURCE_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"

# -- files and ports --
#: the file a worker touches while its loop turns (``--alive-file``), read by ``hyperfleet alive``
ALIVE_FILE = "/tmp/hyperfleet-alive"
#: the port Mongo listens on in its container or pod
MONGO_PORT = 27017
#: where a deployed stack's Mongo clients (workers, monitor, drivers) find the CA that signed Mongo's TLS
#: certificate: their URL's ``tlsCAFile`` (infra/ uploads it into their containers)
MONGO_TLS_CA_FILE = "/etc/hyperfleet/mongo-ca.pem"
#: the monitor's /healthz and /metrics
HEALTH_PORT = 8080
#: the gauge on /metrics that autoscalers read (the chart's KEDA trigger): trials that want a worker now
OPEN_TRIALS_METRIC = "hyperfleet_open_trials"
#: the gauge on /metrics of the trials running on each GPU, labelled host and gpu (docs/gpus.md)
RUNNING_PER_GPU_METRIC = "hyperfleet_running_trials_per_gpu"
#: the dashboard (``hyperfleet dashboard``, or the monitor's ``--dashboard-port``)
DASHBOARD_PORT = 8090
#: where a deployed driver reads its experiment spec (``hyperfleet run PATH``): the file infra/ uploads
#: into the driver's container, the chart's ConfigMap mounted in the driver's pod
DRIVER_SPEC_PATH = "/hyperfleet/experiment.json"

# -- deployed processes --
#: the user (and group) the runtime image runs as (images/runtime/Dockerfile), and so the chart's pods
RUNTIME_UID = 10001
#: a deployed stack's processes start together with MongoDB: they wait this long for it
#: (``--connect-timeout-seconds``) rather than exit and be restarted with backoff (infra/, the chart)
STACK_CONNECT_TIMEOUT_SECONDS = 120
