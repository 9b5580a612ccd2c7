"""The admission webhook's own CA and serving certificate, made and judged in pure code.

The API server calls admission webhooks over TLS only and checks the serving certificate
against the `caBundle` of the webhook configuration. Without cert-manager the webhook is its
own CA: a CA certificate (ten years) signs a serving certificate (a year by default) for the
Service's DNS names or, in development, for 127.0.0.1.

Invariants:

* A certificate is renewed when a third of its validity is left, long before it expires, so
  a missed check (a replica down for a day) never lets the API server meet an expired one.
* A renewed CA is published next to the one it replaces (`ca.crt` holds both, newest first)
  until the old one expires: replicas still serving a certificate from the old CA stay
  trusted while they pick up the new one.
* Keys are EC P-256 and never leave the process but through the Secret (0600 files for
  the TLS library, in a 0700 directory).
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
RENEW_FRACTION_LEFT = 1 / 3
BACKDATE = datetime.timedelta(minutes=5)
"""Clocks differ a little between the webhook and the API server."""


@dataclass(frozen=True)
class Material:
    """What the Secret holds, in PEM."""

    ca_bundle: bytes
    """The CA certificates to trust, newest first."""
    ca_key: bytes
    cert: bytes
    key: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def new_ca(now: datetime.datetime) -> tuple[bytes, bytes]:
    """(certificate, key) of a new CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imagestream-admission-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def issue(
    ca_cert: bytes,
    ca_key: bytes,
    hosts: Sequence[str],
    *,
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> tuple[bytes, bytes]:
    """(certificate, key) of a serving certificate for `hosts`, signed by the CA."""
    authority = x509.load_pem_x509_certificate(ca_cert)
    signer = serialization.load_pem_private_key(ca_key, password=None)
    if not isinstance(signer, ec.EllipticCurvePrivateKey):
        raise ValueError("the admission CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + validity, authority.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _due(cert: x509.Certificate, now: datetime.datetime) -> bool:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return cert.not_valid_after_utc - now < lifetime * RENEW_FRACTION_LEFT


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def _covers(cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    present = {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    return wanted <= present


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def renewed(
    current: Material | None,
    hosts: Sequence[str],
    *,
    now: datetime.datetime,
    validity: datetime.timedelta,
) -> Material | None:
    """The material to store instead of `current`, or None when `current` is good.

    A CA that is missing, unreadable or due is replaced (the old one kept in the bundle
    while it is valid); a serving certificate that is missing, due, not for all `hosts` or
    not from the current CA is issued again.
    """
    bundle = _certificates(current.ca_bundle) if current else []
    ca_ok = bool(bundle) and current is not None and not _due(bundle[0], now)
    if ca_ok and current is not None:
        ca_cert, ca_key = bundle[0].public_bytes(serialization.Encoding.PEM), current.ca_key
        try:
            serialization.load_pem_private_key(ca_key, password=None)
        except ValueError:
            ca_ok = False
    if not ca_ok:
        ca_cert, ca_key = new_ca(now)
        still_valid = [c for c in bundle if c.not_valid_after_utc > now]
        ca_bundle = ca_cert + b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in still_valid
        )
        cert, key = issue(ca_cert, ca_key, hosts, now=now, validity=validity)
        return Material(ca_bundle=ca_bundle, ca_key=ca_key, cert=cert, key=key)
    assert current is not None
    served = _certificates(current.cert)
    if (
        served
        and not _due(served[0], now)
        and served[0].issuer == bundle[0].subject
        and _covers(served[0], hosts)
        and _verifies(served[0], bundle[0])
    ):
        return None
    cert, key = issue(ca_cert, ca_key, hosts, now=now, validity=validity)
    return Material(ca_bundle=current.ca_bundle, ca_key=ca_key, cert=cert, key=key)


def _verifies(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def serial(pem: bytes) -> int:
    """The serial number of the first certificate in `pem` (tests and logs tell them apart)."""
    return x509.load_pem_x509_certificate(pem).serial_number
