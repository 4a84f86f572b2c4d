"""moto's S3 server: buckets, PUT/GET (SDK and presigned URL), stopped by its PID."""

from __future__ import annotations

import hashlib
import urllib.request

import pytest
from botocore.exceptions import ClientError

from tests.support.procs import pid_alive
from tests.support.s3 import S3Endpoint, run_moto


def test_bucket_put_get(s3_endpoint: S3Endpoint) -> None:
    bucket = s3_endpoint.create_bucket()
    assert bucket.startswith("bucketreel-test-")
    client = s3_endpoint.client()
    client.put_object(Bucket=bucket, Key="a/b/000000.mp4", Body=b"segment bytes")
    got = client.get_object(Bucket=bucket, Key="a/b/000000.mp4")
    assert got["Body"].read() == b"segment bytes"
    assert client.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-central-1"


def test_presigned_put_then_get_over_http(s3_endpoint: S3Endpoint) -> None:
    bucket = s3_endpoint.create_bucket()
    client = s3_endpoint.client()
    body = b"x" * 1000
    put_url = client.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "k.mp4"}, ExpiresIn=60
    )
    assert put_url.startswith(f"{s3_endpoint.url}/{bucket}/k.mp4?")  # path-style
    # urllib would send a form content type, which moto's server parses (and empties).
    headers = {"Content-Type": "application/octet-stream"}
    request = urllib.request.Request(put_url, data=body, method="PUT", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
    get_url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k.mp4"}, ExpiresIn=60
    )
    with urllib.request.urlopen(get_url, timeout=10) as response:  # noqa: S310
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(body).digest()


def test_moto_server_is_stopped_by_pid() -> None:
    with run_moto() as endpoint:
        assert endpoint.pid is not None
        pid = endpoint.pid
        assert pid_alive(pid)
        endpoint.create_bucket("bucketreel-test-stop")
    assert not pid_alive(pid)


def test_one_letter_bucket_names_are_not_used(s3_endpoint: S3Endpoint) -> None:
    names = {s3_endpoint.create_bucket() for _ in range(3)}
    assert len(names) == 3
    with pytest.raises(ClientError, match="InvalidBucketName"):
        s3_endpoint.create_bucket("b")
