"""A throwaway certificate authority for the local control plane.

The API server's serving certificate must carry IP SANs: Go clients (the API
server talking to itself, kube-controller-manager) do no CN fallback, so a
CN-only certificate fails with "certificate is not valid for any names".

`CertificateAuthority.issue()` signs the node's certificates: client
certificates whose CN/O are the Kubernetes user and groups (the kubelet is
`system:node:<name>` in `system:nodes`, or the Node authorizer refuses it),
and the kubelet's own serving certificate.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from imagestream.certificates import self_signed_ca
from localdev.private import private_dir, write_private


@dataclass(frozen=True)
class ServingCertificate:
    ca_path: Path
    cert_path: Path
    key_path: Path


def _write_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, path: Path) -> None:
    # 0600 from creation (`localdev.private`): a key is never readable by others.
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def make_serving_certificate(
    directory: Path, *, extra_ips: tuple[str, ...] = (), extra_dns: tuple[str, ...] = ()
) -> ServingCertificate:
    """Write a CA and a serving certificate for 127.0.0.1, ::1 and localhost.

    `extra_ips`/`extra_dns` add SANs: an API server that Pods reach through
    the `kubernetes` Service must also be valid for the Service's ClusterIP.
    """
    now = datetime.datetime.now(datetime.UTC)
    valid_from, valid_to = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=7)

    ca_cert, ca_key = self_signed_ca(
        "imagestream-localdev-ca", not_before=valid_from, not_after=valid_to
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid_from)
        .not_valid_after(valid_to)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                    *(x509.DNSName(name) for name in extra_dns),
                    *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    private_dir(directory)  # it holds the keys
    ca_path, cert_path, key_path = (
        directory / "ca.crt",
        directory / "serving.crt",
        directory / "serving.key",
    )
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    # The CA key signs cluster certificates for kube-controller-manager too.
    _write_key(ca_key, directory / "ca.key")
    return ServingCertificate(ca_path=ca_path, cert_path=cert_path, key_path=key_path)


def make_service_account_key(path: Path) -> Path:
    """The key that signs and verifies ServiceAccount tokens."""
    _write_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), path)
    return path


@dataclass(frozen=True)
class KeyPair:
    cert_path: Path
    key_path: Path


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA whose key is on disk (ours, or the control plane's `ca.crt`/`ca.key`)."""

    cert_path: Path
    key_path: Path

    def issue(
        self,
        directory: Path,
        name: str,
        *,
        common_name: str,
        organizations: tuple[str, ...] = (),
        client: bool = False,
        server: bool = False,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> KeyPair:
        """Write `<name>.crt`/`<name>.key` in `directory`, signed by this CA."""
        ca_cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        now = datetime.datetime.now(datetime.UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if server:
            usages.append(x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if dns or ips:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        *(x509.DNSName(d) for d in dns),
                        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        directory.mkdir(parents=True, exist_ok=True)
        pair = KeyPair(cert_path=directory / f"{name}.crt", key_path=directory / f"{name}.key")
        pair.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, pair.key_path)
        return pair


def make_certificate_authority(
    directory: Path, name: str, common_name: str
) -> CertificateAuthority:
    """Write a fresh CA as `<name>.crt`/`<name>.key` (valid for a week)."""
    now = datetime.datetime.now(datetime.UTC)
    cert, key = self_signed_ca(
        common_name,
        not_before=now - datetime.timedelta(minutes=5),
        not_after=now + datetime.timedelta(days=7),
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority(
        cert_path=directory / f"{name}.crt", key_path=directory / f"{name}.key"
    )
    ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, ca.key_path)
    return ca
