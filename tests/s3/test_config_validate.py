"""``callfs config validate --check-connectivity`` run as a user runs it, against SeaweedFS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tools.s3_server import SeaweedS3Server

pytestmark = pytest.mark.s3

CALLFS = Path(sys.executable).parent / "callfs"


def validate(environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run ``callfs config validate`` with only ``environment``'s CALLFS_* variables."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CALLFS_")}
    return subprocess.run(
        [str(CALLFS), "config", "validate", *arguments],
        env={**inherited, **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


STRONG = "a-strong-secret-of-32-characters!"


def s3_environment(
    server: SeaweedS3Server, bucket: str, secret: str | None = None
) -> dict[str, str]:
    """S3 settings, secrets every role accepts, and no PostgreSQL or Redis to check."""
    return {
        "CALLFS_AUTH_API_KEYS": STRONG,
        "CALLFS_AUTH_INTERNAL_PROXY_SECRET": STRONG,
        "CALLFS_AUTH_SINGLE_USE_LINK_SECRET": STRONG,
        "CALLFS_METADATA_STORE_TYPE": "sqlite",
        "CALLFS_DLM_TYPE": "local",
        "CALLFS_BACKEND_DEFAULT_BACKEND": "s3",
        "CALLFS_BACKEND_S3_ACCESS_KEY": server.access_key,
        "CALLFS_BACKEND_S3_SECRET_KEY": secret or server.secret_key,
        "CALLFS_BACKEND_S3_BUCKET_NAME": bucket,
        "CALLFS_BACKEND_S3_ENDPOINT": server.endpoint,
    }


@pytest.fixture
def bucket(seaweedfs_s3: SeaweedS3Server) -> str:
    name = f"callfs-{uuid.uuid4().hex[:16]}"
    seaweedfs_s3.create_bucket(name)
    return name


def test_reachable_bucket_exits_zero_and_masks_the_keys(
    seaweedfs_s3: SeaweedS3Server, bucket: str
) -> None:
    result = validate(s3_environment(seaweedfs_s3, bucket), "--check-connectivity")

    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)["backend"]
    assert printed["s3_bucket_name"] == bucket
    assert printed["s3_endpoint"] == seaweedfs_s3.endpoint
    assert printed["s3_access_key"] == "********"
    assert printed["s3_secret_key"] == "********"
    assert result.stderr == "callfs: S3 bucket answers\n"
    for output in (result.stdout, result.stderr):
        assert seaweedfs_s3.secret_key not in output
        assert seaweedfs_s3.access_key not in output


def test_missing_bucket_exits_non_zero_naming_the_bucket_and_endpoint(
    seaweedfs_s3: SeaweedS3Server,
) -> None:
    missing = f"callfs-missing-{uuid.uuid4().hex[:8]}"

    result = validate(s3_environment(seaweedfs_s3, missing), "--check-connectivity")

    assert result.returncode != 0
    assert f"bucket {missing!r} does not exist" in result.stderr
    assert seaweedfs_s3.endpoint in result.stderr
    assert seaweedfs_s3.secret_key not in result.stdout + result.stderr


def test_wrong_secret_exits_non_zero_saying_access_was_denied_without_the_secret(
    seaweedfs_s3: SeaweedS3Server, bucket: str
) -> None:
    wrong = "wrong-secret-key-do-not-print-0123"

    result = validate(s3_environment(seaweedfs_s3, bucket, wrong), "--check-connectivity")

    assert result.returncode != 0
    assert "denied" in result.stderr
    assert "CALLFS_BACKEND_S3_SECRET_KEY" in result.stderr
    for output in (result.stdout, result.stderr):
        assert wrong not in output
        assert seaweedfs_s3.secret_key not in output


def test_without_check_connectivity_a_missing_bucket_is_not_contacted(
    seaweedfs_s3: SeaweedS3Server,
) -> None:
    result = validate(s3_environment(seaweedfs_s3, "callfs-never-created"))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_invalid_s3_setting_exits_two_naming_the_variable() -> None:
    result = validate({"CALLFS_BACKEND_S3_PART_SIZE": "1000"}, "--check-connectivity")

    assert result.returncode == 2
    assert "CALLFS_BACKEND_S3_PART_SIZE" in result.stderr
    assert result.stdout == ""
