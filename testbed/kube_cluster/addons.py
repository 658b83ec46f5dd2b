"""The add-ons of the tests' cluster: CoreDNS (the kubelet's clusterDNS), rancher's
local-path-provisioner (the default StorageClass) and KEDA's operator and external-metrics adapter
behind the API server's aggregation layer."""

from __future__ import annotations

import base64
import json
import os
import shlex
import time

from testbed import base_image
from testbed.processes import port_open

from .common import (
    CONTEXT,
    EXTERNAL_METRICS,
    KEDA_ADAPTER_METRICS_PORT,
    KEDA_ADAPTER_PORT,
    KEDA_ADAPTER_SERVICE,
    KEDA_CRDS,
    KEDA_GRPC_PORT,
    KEDA_NAMESPACE,
    KEDA_OPERATOR_HEALTH_PORT,
    KEDA_OPERATOR_METRICS_PORT,
    KUBECONFIG,
    RUN_DIR,
    ClusterBase,
    dns_answers,
)


class Addons(ClusterBase):
    def _start_dns(self, coredns: str, deadline: float) -> None:
        corefile = RUN_DIR / "Corefile"
        corefile.write_text(f""".:53 {{
    bind {self.ip}
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {KUBECONFIG} {CONTEXT}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
}}
""")
        self._spawn("coredns", [coredns, "-conf", str(corefile)])
        self._wait("coredns", deadline, lambda: dns_answers(self.ip, "kubernetes.default.svc.cluster.local"))

    def _start_provisioner(self, provisioner: str, deadline: float) -> None:
        namespace, volumes = "local-path-storage", RUN_DIR / "volumes"
        image = base_image()
        self.load_images([image])
        objects = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "local-path-provisioner", "namespace": namespace}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "local-path-config", "namespace": namespace},
             "data": {
                 "config.json": json.dumps({"nodePathMap": [
                     {"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(volumes)]}]}),
                 # any user may write a volume: the database runs as a non-root user
                 "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                 "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                 "helperPod.yaml": json.dumps({
                     "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
                     "spec": {"containers": [{"name": "helper-pod", "image": image,
                                              "imagePullPolicy": "IfNotPresent"}]}}),
             }},
            {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
             "metadata": {"name": "local-path",
                          "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
             "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer",
             "reclaimPolicy": "Delete"},
        ]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self._spawn("local-path-provisioner", [
            provisioner, "start", f"--kubeconfig={KUBECONFIG}", f"--namespace={namespace}",
            "--configmap-name=local-path-config", "--service-account-name=local-path-provisioner",
            f"--helper-image={image}", "--provisioner-name=rancher.io/local-path",
        ], env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})
        started = time.monotonic()  # it has no health endpoint: alive after a second is good enough
        self._wait("local-path-provisioner", deadline, lambda: time.monotonic() - started > 1)

    def _start_keda(self, binaries: dict, deadline: float) -> None:
        """KEDA's operator and adapter as host processes with the admin kubeconfig, its CRDs, and the
        APIService that sends external metrics to the adapter."""
        certs, namespace = self.pki / "keda", KEDA_NAMESPACE
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KEDA_CRDS))  # one is over 256 KiB
        env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "WATCH_NAMESPACE": "", "POD_NAMESPACE": namespace,
               "KEDA_CLUSTER_OBJECT_NAMESPACE": namespace}
        self.kubectl("create", "namespace", namespace)
        # the scalers dial Service names: a resolv.conf like a pod's, in a mount namespace of its own
        resolv = RUN_DIR / "keda-resolv.conf"
        resolv.write_text(f"nameserver {self.ip}\nsearch svc.cluster.local cluster.local\noptions ndots:5\n")
        operator = shlex.join([
            binaries["keda-operator"], f"--kubeconfig={KUBECONFIG}", "--leader-elect=false",
            f"--cert-dir={certs}", "--enable-cert-rotation=false", "--enable-webhook-patching=false",
            "--enable-apiservice-patching=false", f"--metrics-service-bind-address=127.0.0.1:{KEDA_GRPC_PORT}",
            f"--metrics-bind-address=127.0.0.1:{KEDA_OPERATOR_METRICS_PORT}",
            f"--health-probe-bind-address=127.0.0.1:{KEDA_OPERATOR_HEALTH_PORT}", "--zap-encoder=console",
        ])
        self._spawn("keda-operator", ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                                      f"mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && exec {operator}"],
                    env=env)
        self._spawn("keda-adapter", [
            binaries["keda-adapter"], f"--kubeconfig={KUBECONFIG}", f"--lister-kubeconfig={KUBECONFIG}",
            f"--authentication-kubeconfig={KUBECONFIG}", f"--authorization-kubeconfig={KUBECONFIG}",
            f"--secure-port={KEDA_ADAPTER_PORT}", f"--bind-address={self.ip}", f"--cert-dir={certs}",
            f"--tls-cert-file={certs}/tls.crt", f"--tls-private-key-file={certs}/tls.key",
            f"--metrics-service-address=127.0.0.1:{KEDA_GRPC_PORT}", f"--port={KEDA_ADAPTER_METRICS_PORT}",
        ], env=env)
        self._wait("keda-adapter", deadline, lambda: port_open(self.ip, KEDA_ADAPTER_PORT))
        # after the adapter listens: an APIService found unavailable is only looked at again later
        ca_bundle = base64.b64encode((certs / "ca.crt").read_bytes()).decode()
        service = KEDA_ADAPTER_SERVICE
        objects = [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": namespace},
             "spec": {"ports": [{"name": "https", "port": 443, "targetPort": KEDA_ADAPTER_PORT}]}},
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": service, "namespace": namespace},
             "subsets": [{"addresses": [{"ip": self.ip}],
                          "ports": [{"name": "https", "port": KEDA_ADAPTER_PORT}]}]},
            {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
             "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
             "spec": {"service": {"name": service, "namespace": namespace, "port": 443},
                      "group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle,
                      "groupPriorityMinimum": 100, "versionPriority": 100}},
        ]
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        self._wait("keda-operator", deadline, lambda: port_open("127.0.0.1", KEDA_GRPC_PORT))
        self._wait("keda-adapter", deadline, lambda: self._kubectl_ok("get", "--raw", EXTERNAL_METRICS))

