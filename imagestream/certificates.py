"""Certificate authorities made in code: the one recipe for a CA certificate.

Two places make a CA of their own: the admission webhook, when no cert-manager issues its
certificate (webhook/admission/certs.py), and the local system, for its control plane and
test registries (localdev/certs.py). They must agree on what a CA is, or one of them ends up
with a CA that some TLS library refuses (a missing KeyUsage, a path length that lets a
serving certificate sign others).

Invariant: a CA made here is EC P-256, self-signed with SHA-256, `BasicConstraints(ca=True,
path_length=0)` (it signs leaf certificates only) and `KeyUsage` digitalSignature, keyCertSign
and cRLSign, all critical. Pure: no I/O.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_ca(
    common_name: str, *, not_before: datetime.datetime, not_after: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
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
    return cert, key
