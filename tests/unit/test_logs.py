"""No secret reaches a log line, whatever key it is logged under."""

from __future__ import annotations

import json

import pytest
import structlog

from imagestream.logs import configure_logging


def test_secret_keys_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(log_format="json", log_level="info")
    structlog.get_logger("t").info(
        "receiver_configured",
        receiver="dist",
        token="s3cr3t-token",
        authorization="Bearer s3cr3t-bearer",
        hmac_secret="s3cr3t-hmac",
        token_file="/etc/token",
        digest="sha256:abc",
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "s3cr3t" not in line
    record = json.loads(line)
    assert record["event"] == "receiver_configured"
    assert record["token_file"] == "/etc/token"  # a path is not a secret
    assert record["digest"] == "sha256:abc"
