"""`localdev.seaweedfs.sign_v4` signs as AWS documents Signature Version 4.

The vector is AWS's own S3 example ("GET Object": the first 10 bytes of
test.txt in examplebucket, signed 2013-05-24 with the documentation's example
keys); SeaweedFS accepting our bucket creation is the live check beside it
(tests/integration/test_registry_s3.py).
"""

from __future__ import annotations

import datetime

import pytest

from localdev.seaweedfs import S3Credentials, sign_v4

AWS_EXAMPLE_KEYS = S3Credentials(
    access_key="AKIAIOSFODNN7EXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)
AWS_EXAMPLE_TIME = datetime.datetime(2013, 5, 24, tzinfo=datetime.UTC)


def test_signs_aws_documented_get_object_example() -> None:
    headers = sign_v4(
        "GET",
        "https://examplebucket.s3.amazonaws.com/test.txt",
        credentials=AWS_EXAMPLE_KEYS,
        region="us-east-1",
        payload=b"",
        now=AWS_EXAMPLE_TIME,
        extra_headers={"Range": "bytes=0-9"},
    )
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )
    assert headers["x-amz-date"] == "20130524T000000Z"
    assert headers["x-amz-content-sha256"] == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_another_secret_gives_another_signature() -> None:
    def signature(credentials: S3Credentials) -> str:
        return sign_v4(
            "PUT",
            "http://127.0.0.1:8333/registry",
            credentials=credentials,
            region="us-east-1",
            payload=b"",
            now=AWS_EXAMPLE_TIME,
        )["authorization"]

    wrong = S3Credentials(access_key=AWS_EXAMPLE_KEYS.access_key, secret_key="not-the-secret")
    assert signature(AWS_EXAMPLE_KEYS) != signature(wrong)


def test_refuses_a_query_string_it_would_sign_wrongly() -> None:
    with pytest.raises(ValueError, match="query"):
        sign_v4(
            "GET",
            "http://127.0.0.1:8333/registry?list-type=2",
            credentials=AWS_EXAMPLE_KEYS,
            region="us-east-1",
            payload=b"",
            now=AWS_EXAMPLE_TIME,
        )


def test_credentials_repr_hides_the_secret() -> None:
    assert "wJalrXUtnFEMI" not in repr(AWS_EXAMPLE_KEYS)
