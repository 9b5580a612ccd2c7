"""When the admission CA and serving certificate are renewed (webhook/admission/certs.py)."""

from __future__ import annotations

import datetime

from cryptography import x509

from webhook.admission.certs import Material, renewed, serial

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
YEAR = datetime.timedelta(days=365)


def first() -> Material:
    material = renewed(None, ["svc.ns.svc", "127.0.0.1"], now=NOW, validity=YEAR)
    assert material is not None
    return material


def test_a_good_certificate_is_kept() -> None:
    material = first()
    assert renewed(material, ["svc.ns.svc", "127.0.0.1"], now=NOW, validity=YEAR) is None
    later = NOW + datetime.timedelta(days=200)
    assert renewed(material, ["svc.ns.svc"], now=later, validity=YEAR) is None


def test_renewed_with_a_third_left_from_the_same_ca() -> None:
    material = first()
    later = NOW + datetime.timedelta(days=250)
    again = renewed(material, ["svc.ns.svc", "127.0.0.1"], now=later, validity=YEAR)
    assert again is not None
    assert again.ca_bundle == material.ca_bundle and again.ca_key == material.ca_key
    assert serial(again.cert) != serial(material.cert)


def test_a_new_host_gets_a_new_certificate() -> None:
    material = first()
    again = renewed(material, ["svc.ns.svc", "other.ns.svc"], now=NOW, validity=YEAR)
    assert again is not None
    san = x509.load_pem_x509_certificate(again.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "other.ns.svc" in san.value.get_values_for_type(x509.DNSName)


def test_a_due_ca_is_replaced_and_the_old_one_stays_trusted() -> None:
    material = first()
    later = NOW + datetime.timedelta(days=3650 - 100)
    again = renewed(material, ["svc.ns.svc"], now=later, validity=YEAR)
    assert again is not None
    bundle = x509.load_pem_x509_certificates(again.ca_bundle)
    old = x509.load_pem_x509_certificates(material.ca_bundle)[0]
    assert len(bundle) == 2 and bundle[1].serial_number == old.serial_number
    x509.load_pem_x509_certificate(again.cert).verify_directly_issued_by(bundle[0])


def test_unreadable_material_starts_over() -> None:
    broken = Material(ca_bundle=b"junk", ca_key=b"junk", cert=b"junk", key=b"junk")
    again = renewed(broken, ["svc.ns.svc"], now=NOW, validity=YEAR)
    assert again is not None
    assert len(x509.load_pem_x509_certificates(again.ca_bundle)) == 1
