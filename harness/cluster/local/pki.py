"""The cluster's PKI: one CA, serving and client certificates, the service-account key pair.

Generated per cluster under ``<state>/pki`` (keys 0600) with ``cryptography``; never printed.
Serving certificates carry the names and addresses their clients dial (SANs), client
certificates the user (CN) and groups (O) the API server's x509 authenticator reads.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel, ConfigDict

VALIDITY = datetime.timedelta(days=365)


class CertSpec(BaseModel):
    """One certificate to issue from the CA."""

    model_config = ConfigDict(frozen=True)

    name: str  # file stem: <name>.crt, <name>.key
    common_name: str
    organizations: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    server: bool = False
    client: bool = False


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ensure_ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The cluster CA (created once; reused while both files are there)."""
    crt, key_path = pki / "ca.crt", pki / "ca.key"
    if crt.is_file() and key_path.is_file():
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("vsearch-cluster-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + 10 * VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _key_pem(key))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue(pki: Path, spec: CertSpec) -> Path:
    """Issue ``spec`` from the CA into <pki>/<name>.crt/.key (kept when its SANs still match)."""
    ca_cert, ca_key = ensure_ca(pki)
    crt, key_path = pki / f"{spec.name}.crt", pki / f"{spec.name}.key"
    if crt.is_file() and key_path.is_file() and matches(crt, spec, ca_cert):
        return crt
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if spec.server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(spec.common_name, spec.organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in spec.ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, _key_pem(key))
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt


def matches(crt: Path, spec: CertSpec, ca_cert: x509.Certificate) -> bool:
    """The certificate on disk is signed by this CA and names what ``spec`` asks for."""
    cert = x509.load_pem_x509_certificate(crt.read_bytes())
    if cert.issuer != ca_cert.subject or cert.subject != _name(
        spec.common_name, spec.organizations
    ):
        return False
    if cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < datetime.timedelta(days=7):
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, Exception):
        return False
    dns, ips = sans(cert)
    return dns == sorted(spec.dns_names) and ips == sorted(spec.ips)


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    dns = sorted(ext.get_values_for_type(x509.DNSName))
    ips = sorted(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return dns, ips


def ensure_service_account_keys(pki: Path) -> tuple[Path, Path]:
    """The RSA key pair that signs service-account tokens (sa.key, sa.pub)."""
    key_path, pub = pki / "sa.key", pki / "sa.pub"
    if key_path.is_file() and pub.is_file():
        return key_path, pub
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(key_path, _key_pem(key))
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key_path, pub


def cluster_certs(node_name: str, node_ip: str, service_ip: str) -> tuple[CertSpec, ...]:
    """Every certificate the cluster's parts present or check."""
    local = ("127.0.0.1", node_ip)
    return (
        CertSpec(
            name="apiserver",
            common_name="kube-apiserver",
            dns_names=(
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ),
            ips=(*local, service_ip),
            server=True,
        ),
        CertSpec(
            name="etcd-server",
            common_name="etcd",
            dns_names=("localhost",),
            ips=("127.0.0.1",),
            server=True,
        ),
        CertSpec(
            name="apiserver-etcd-client", common_name="kube-apiserver-etcd-client", client=True
        ),
        CertSpec(
            name="apiserver-kubelet-client",
            common_name="kube-apiserver-kubelet-client",
            organizations=("system:masters",),
            client=True,
        ),
        CertSpec(
            name="admin",
            common_name="vsearch-admin",
            organizations=("system:masters",),
            client=True,
        ),
        CertSpec(
            name="controller-manager", common_name="system:kube-controller-manager", client=True
        ),
        CertSpec(name="scheduler", common_name="system:kube-scheduler", client=True),
        CertSpec(name="kube-proxy", common_name="system:kube-proxy", client=True),
        CertSpec(
            name="controller-manager-server",
            common_name="kube-controller-manager",
            dns_names=("localhost",),
            ips=("127.0.0.1",),
            server=True,
        ),
        CertSpec(
            name="scheduler-server",
            common_name="kube-scheduler",
            dns_names=("localhost",),
            ips=("127.0.0.1",),
            server=True,
        ),
        CertSpec(
            name="kubelet-client",
            common_name=f"system:node:{node_name}",
            organizations=("system:nodes",),
            client=True,
        ),
        CertSpec(
            name="kubelet-server",
            common_name=node_name,
            dns_names=(node_name,),
            ips=local,
            server=True,
        ),
    )


def ensure_all(pki: Path, node_name: str, node_ip: str, service_ip: str) -> list[Path]:
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    issued = [issue(pki, spec) for spec in cluster_certs(node_name, node_ip, service_ip)]
    ensure_service_account_keys(pki)
    return issued
