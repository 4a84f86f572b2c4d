"""A real S3 API over HTTP: moto's server, as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import INSTALL_HINT, ManagedProcess, MissingDependencyError, free_port, http_probe

DEFAULT_REGION = "eu-central-1"


@dataclass(frozen=True)
class S3Endpoint:
    """Where the suite's S3 API listens, and credentials it accepts."""

    url: str
    region: str = DEFAULT_REGION
    access_key_id: str = "bucketreel-test-key"
    secret_access_key: str = "bucketreel-test-secret"  # moto accepts any key
    pid: int | None = None

    def client(self, **overrides: Any) -> Any:
        """A boto3 S3 client for this endpoint (path-style, SigV4, checksums when required)."""
        return s3_client(self, **overrides)

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh `bucketreel-test-<hex>` by default) and return its name."""
        return create_bucket(self, name)


def bucket_name() -> str:
    """A fresh, valid bucket name (moto rejects very short ones)."""
    return f"bucketreel-test-{secrets.token_hex(6)}"


def s3_client(endpoint: S3Endpoint, **overrides: Any) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 2, "mode": "standard"},
    )
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint.url,
        "region_name": endpoint.region,
        "aws_access_key_id": endpoint.access_key_id,
        "aws_secret_access_key": endpoint.secret_access_key,
        "config": config,
    }
    kwargs.update(overrides)
    return boto3.session.Session().client("s3", **kwargs)


def create_bucket(endpoint: S3Endpoint, name: str | None = None) -> str:
    name = name or bucket_name()
    params: dict[str, Any] = {"Bucket": name}
    if endpoint.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": endpoint.region}
    s3_client(endpoint).create_bucket(**params)
    return name


def moto_command(port: int) -> list[str]:
    """`python -m moto.server` from this interpreter (falls back to the moto_server script)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        script = Path(sys.executable).parent / "moto_server"
        if not script.exists():
            raise MissingDependencyError(
                f"moto[server] not found for {sys.executable}: {INSTALL_HINT}"
            ) from None
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


@contextmanager
def run_moto(
    *,
    region: str = DEFAULT_REGION,
    extra_env: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    timeout: float = 60.0,
) -> Iterator[S3Endpoint]:
    """Run moto's server until the block ends.

    `extra_env` reaches the server, e.g. {"INITIAL_NO_AUTH_ACTION_COUNT": "0"} to make moto
    check credentials and IAM policies (needed to test key deactivation and denied actions).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env.update({"AWS_DEFAULT_REGION": region, "PYTHONUNBUFFERED": "1"})
    env.update(extra_env or {})
    for attempt in range(3):  # the port could be taken between free_port() and bind()
        port = free_port()
        proc = ManagedProcess("moto", moto_command(port), env=env, log_dir=log_dir)
        with proc:
            url = f"http://127.0.0.1:{port}"
            try:
                proc.wait_ready(http_probe(f"{url}/moto-api/", status=None), timeout=timeout)
            except Exception as err:
                if attempt == 2 or "Address already in use" not in str(err):
                    raise
                continue
            yield S3Endpoint(url=url, region=region, pid=proc.pid)
            return
