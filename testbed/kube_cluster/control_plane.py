"""The control plane of the tests' cluster: etcd, kube-apiserver (with the aggregation layer KEDA's
adapter needs), kube-controller-manager and kube-scheduler, as host processes."""

from __future__ import annotations

from testbed.kube_server import SERVICE_CLUSTER_IP_RANGE
from testbed.processes import port_open

from .common import API_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, RUN_DIR, ClusterBase


class ControlPlane(ClusterBase):
    def _start_control_plane(self, binaries: dict, deadline: float) -> None:
        pki, etcd_url = self.pki, f"http://127.0.0.1:{ETCD_CLIENT_PORT}"
        self._spawn("etcd", [
            binaries["etcd"], "--name=hyperfleet-local", f"--data-dir={RUN_DIR}/etcd",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
            f"--initial-cluster=hyperfleet-local=http://127.0.0.1:{ETCD_PEER_PORT}", "--initial-cluster-state=new",
            "--log-level=warn", "--logger=zap", "--unsafe-no-fsync",
        ])
        self._wait("etcd", deadline, lambda: port_open("127.0.0.1", ETCD_CLIENT_PORT))
        self._spawn("kube-apiserver", [
            binaries["kube-apiserver"], f"--etcd-servers={etcd_url}",
            "--bind-address=0.0.0.0", f"--secure-port={API_PORT}", f"--advertise-address={self.ip}",
            f"--cert-dir={pki}", f"--tls-cert-file={pki}/apiserver.crt", f"--tls-private-key-file={pki}/apiserver.key",
            f"--client-ca-file={pki}/ca.crt", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki}/apiserver-kubelet-client.crt",
            f"--kubelet-client-key={pki}/apiserver-kubelet-client.key",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki}/sa.pub", f"--service-account-signing-key-file={pki}/sa.key",
            "--allow-privileged=true", "--profiling=false",
            # the aggregation layer (KEDA's external metrics), calling the adapter at its endpoint's address
            f"--requestheader-client-ca-file={pki}/front-proxy/ca.crt",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki}/front-proxy/front-proxy-client.crt",
            f"--proxy-client-key-file={pki}/front-proxy/front-proxy-client.key",
            "--enable-aggregator-routing=true",
        ])
        self._wait("kube-apiserver", deadline, lambda: self._kubectl_ok("get", "--raw", "/readyz"))
        # the API server's client identity may use the kubelet API (logs, exec, port-forward)
        self.kubectl("create", "clusterrolebinding", "hyperfleet-apiserver-kubelet-client",
                     "--clusterrole=system:kubelet-api-admin", "--user=kube-apiserver-kubelet-client")
        self._spawn("kube-controller-manager", [
            binaries["kube-controller-manager"], f"--kubeconfig={RUN_DIR}/kcm.kubeconfig",
            f"--authentication-kubeconfig={RUN_DIR}/kcm.kubeconfig",
            f"--authorization-kubeconfig={RUN_DIR}/kcm.kubeconfig",
            "--bind-address=127.0.0.1", "--leader-elect=false",
            f"--service-account-private-key-file={pki}/sa.key", f"--root-ca-file={pki}/ca.crt",
            f"--cluster-signing-cert-file={pki}/ca.crt", f"--cluster-signing-key-file={pki}/ca.key",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--use-service-account-credentials=true", "--profiling=false",
        ])
        self._spawn("kube-scheduler", [
            binaries["kube-scheduler"], f"--kubeconfig={RUN_DIR}/scheduler.kubeconfig",
            f"--authentication-kubeconfig={RUN_DIR}/scheduler.kubeconfig",
            f"--authorization-kubeconfig={RUN_DIR}/scheduler.kubeconfig",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false",
        ])
        self._wait("kube-controller-manager", deadline,
                   lambda: self._kubectl_ok("get", "serviceaccount", "default", "-n", "default"))

