"""The tests' cluster's certificates: its CA, the API server's serving certificate, a client certificate
and kubeconfig per component, the kubelet's serving certificate, the service-account keys, the
aggregation layer's front-proxy CA, and KEDA's certificate."""

from __future__ import annotations

from pathlib import Path

from testbed.kube_server import apiserver_names, issue_certificate, make_ca, make_service_account_keys, write_kubeconfig

from .common import API_PORT, CONTEXT, KEDA_ADAPTER_SERVICE, KEDA_NAMESPACE, KUBECONFIG, NODE_NAME, RUN_DIR


def make_pki(pki_dir: Path, ip: str) -> None:
    """Every certificate and kubeconfig of one ``up``, into ``pki_dir`` and the run directory."""
    pki = str(pki_dir)
    make_ca(pki, days=30)
    issue_certificate(pki, "apiserver", "/CN=kube-apiserver", "serverAuth",
                      apiserver_names([ip, "127.0.0.1"]), days=30)
    users = {
        "admin": "/O=system:masters/CN=hyperfleet-admin",
        "kcm": "/CN=system:kube-controller-manager",
        "scheduler": "/CN=system:kube-scheduler",
        "kubelet": f"/O=system:nodes/CN=system:node:{NODE_NAME}",
        "kube-proxy": "/CN=system:kube-proxy",
        # the API server towards kubelets (logs, exec): system:kubelet-api-admin is bound to it below
        "apiserver-kubelet-client": "/CN=kube-apiserver-kubelet-client",
    }
    for name, subject in users.items():
        issue_certificate(pki, name, subject, "clientAuth", days=30)
    issue_certificate(pki, "kubelet-serving", f"/CN={NODE_NAME}", "serverAuth",
                      f"DNS:{NODE_NAME},IP:{ip}", days=30)
    make_service_account_keys(pki)
    # the aggregation layer: a CA of its own for the API server's client certificate towards extension
    # API servers (KEDA's adapter), which trust it through the extension-apiserver-authentication map
    front_proxy = pki_dir / "front-proxy"
    front_proxy.mkdir(exist_ok=True)
    make_ca(str(front_proxy), days=30)
    issue_certificate(str(front_proxy), "front-proxy-client", "/CN=front-proxy-client", "clientAuth", days=30)
    # KEDA: the operator's gRPC server and the adapter (its client, and the HTTPS server the API server
    # calls) share one certificate; both read ca.crt, tls.crt and tls.key from one directory
    keda = pki_dir / "keda"
    keda.mkdir(exist_ok=True)
    make_ca(str(keda), days=30)
    service = f"{KEDA_ADAPTER_SERVICE}.{KEDA_NAMESPACE}.svc"  # the name the API server checks
    issue_certificate(str(keda), "tls", "/CN=keda", "serverAuth,clientAuth",
                      f"DNS:localhost,DNS:{service},DNS:{service}.cluster.local,IP:127.0.0.1,IP:{ip}", days=30)
    server = f"https://{ip}:{API_PORT}"
    for name in users:
        path = KUBECONFIG if name == "admin" else RUN_DIR / f"{name}.kubeconfig"
        write_kubeconfig(str(path), CONTEXT, server, f"{pki}/ca.crt", f"{pki}/{name}.crt", f"{pki}/{name}.key",
                         user=name)

