"""The cluster PKI: SANs, usages, chain verification with a real TLS handshake, key modes."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.cluster.local import pki


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_apiserver_cert_names_every_address_its_clients_dial(tmp_path: Path) -> None:
    pki.ensure_all(tmp_path, "node-a", "192.0.2.7", "10.96.0.1")
    cert = _load(tmp_path / "apiserver.crt")
    dns, ips = pki.sans(cert)
    assert "kubernetes.default.svc.cluster.local" in dns and "kubernetes" in dns
    assert sorted(ips) == ["10.96.0.1", "127.0.0.1", "192.0.2.7"]
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    cert.verify_directly_issued_by(_load(tmp_path / "ca.crt"))


def test_client_certs_carry_user_and_groups(tmp_path: Path) -> None:
    pki.ensure_all(tmp_path, "node-a", "192.0.2.7", "10.96.0.1")
    kubelet = _load(tmp_path / "kubelet-client.crt")
    cn = kubelet.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    org = kubelet.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert (cn, org) == ("system:node:node-a", "system:nodes")
    admin = _load(tmp_path / "admin.crt")
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    usages = admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_keys_are_private_and_certs_are_reused(tmp_path: Path) -> None:
    pki.ensure_all(tmp_path, "node-a", "192.0.2.7", "10.96.0.1")
    first = (tmp_path / "apiserver.crt").read_bytes()
    for key in tmp_path.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    pki.ensure_all(tmp_path, "node-a", "192.0.2.7", "10.96.0.1")
    assert (tmp_path / "apiserver.crt").read_bytes() == first
    # a new node address is a new serving certificate (same CA)
    pki.ensure_all(tmp_path, "node-a", "192.0.2.8", "10.96.0.1")
    assert "192.0.2.8" in pki.sans(_load(tmp_path / "apiserver.crt"))[1]


def test_another_ca_does_not_verify(tmp_path: Path) -> None:
    pki.ensure_all(tmp_path / "a", "n", "192.0.2.7", "10.96.0.1")
    pki.ensure_all(tmp_path / "b", "n", "192.0.2.7", "10.96.0.1")
    other_ca = _load(tmp_path / "b" / "ca.crt")
    with pytest.raises((ValueError, TypeError, Exception)):
        _load(tmp_path / "a" / "apiserver.crt").verify_directly_issued_by(other_ca)
    spec = pki.cluster_certs("n", "192.0.2.7", "10.96.0.1")[0]
    assert not pki.matches(tmp_path / "a" / "apiserver.crt", spec, other_ca)


def test_mutual_tls_handshake_with_the_issued_certs(tmp_path: Path) -> None:
    """A server with the etcd serving cert accepts the API server's client cert, by hostname."""
    pki.ensure_all(tmp_path, "n", "192.0.2.7", "10.96.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.crt")
    server_ctx.load_cert_chain(tmp_path / "etcd-server.crt", tmp_path / "etcd-server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[str] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            peer = tls.getpeercert()
            seen.append(dict(x[0] for x in peer["subject"])["commonName"])
            tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=tmp_path / "ca.crt")
    client_ctx.load_cert_chain(
        tmp_path / "apiserver-etcd-client.crt", tmp_path / "apiserver-etcd-client.key"
    )
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(2) == b"ok"
    thread.join(5)
    listener.close()
    assert seen == ["kube-apiserver-etcd-client"]
    # the kubelet's serving cert does not name localhost: hostname verification refuses it
    bad_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.crt")
    bad_ctx.load_cert_chain(tmp_path / "kubelet-server.crt", tmp_path / "kubelet-server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_bad() -> None:
        conn, _ = listener.accept()
        try:
            with bad_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve_bad, daemon=True)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        client_ctx.wrap_socket(raw, server_hostname="localhost")
    thread.join(5)
    listener.close()
