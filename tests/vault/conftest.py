"""Fixtures for the vault's tests: moto enforcing IAM, a bucket, and the customer's two hats.

  iam_s3        IamMoto: a moto server that enforces IAM (tests/storage/iam.py)
  vault_bucket  VaultBucket: a bucket and a fresh prefix; `owner` is the customer's own client
                (may write, copy and delete: how the tamper cases are made), `reader` the
                vault's credential, an IAM user with exactly `bucketreel-vault policy`
                (list the prefix, read under it); `.vault(...)` runs the console script with it
The end-to-end test (test_vault_e2e.py) sees its bucket through the strict S3 gate instead,
since moto's IAM cannot check the agent's presigned uploads; its reader is a gate key granted
the same three operations under the prefix.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.custody import DeviceKey
from shared.bucket.policy import vault_policy
from tests.storage.conftest import iam_s3 as iam_s3
from tests.storage.iam import IamMoto
from tests.vault.bucketwriter import BucketWriter

VAULT = str(Path(sys.executable).with_name("bucketreel-vault"))


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    secret_access_key: str


@dataclass
class VaultBucket:
    url: str  # the S3 endpoint
    region: str
    bucket: str
    prefix: str
    owner: Any  # a boto3 client with the customer's full rights
    reader: Credential  # the vault's: list the prefix, read under it
    readers: Callable[[str], Credential]  # such a credential for another prefix

    def env(self, who: Credential | None = None) -> dict[str, str]:
        who = who or self.reader
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {
            **clean,
            "AWS_ACCESS_KEY_ID": who.access_key_id,
            "AWS_SECRET_ACCESS_KEY": who.secret_access_key,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def vault(
        self, *args: str, prefix: str | None = None, who: Credential | None = None,
        cwd: Path | None = None, timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """`bucketreel-vault --bucket … --prefix … --endpoint-url … --region … <args>`."""
        base = [
            "--bucket", self.bucket, "--prefix", self.prefix if prefix is None else prefix,
            "--endpoint-url", self.url, "--region", self.region,
        ]
        return subprocess.run(
            [VAULT, *base, *args], env=self.env(who), capture_output=True, text=True,
            timeout=timeout, check=False, stdin=subprocess.DEVNULL, cwd=cwd,
        )

    def json(self, *args: str, expect: int = 0, **kwargs: Any) -> dict[str, Any]:
        done = self.vault("--json", *args, **kwargs)
        assert done.returncode == expect, (done.returncode, done.stdout, done.stderr)
        doc: dict[str, Any] = json.loads(done.stdout)
        return doc

    def writer(self) -> BucketWriter:
        return BucketWriter(self.owner, self.bucket, self.prefix)

    def replace_bytes(self, key: str, body: bytes) -> None:
        """Overwrite an object's bytes, keeping its (signed) user metadata."""
        meta = self.owner.head_object(Bucket=self.bucket, Key=key)["Metadata"]
        self.owner.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=meta)

    def swap_device_key(self, key: str) -> None:
        """Put another public key into a device record, keeping the broker's signature (the
        customer can write the object, but not sign as the broker)."""
        record = json.loads(self.owner.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        record["public_key"] = DeviceKey.generate().public_key
        self.owner.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(record).encode())

    def copy(self, prefix: str) -> VaultBucket:
        """The same bucket seen under another prefix, with a reader of its own."""
        return VaultBucket(url=self.url, region=self.region, bucket=self.bucket, prefix=prefix,
                           owner=self.owner, reader=self.readers(prefix), readers=self.readers)


@pytest.fixture(scope="module")
def vault_s3_bucket(iam_s3: IamMoto) -> str:
    return iam_s3.endpoint.create_bucket()


def iam_reader(iam: IamMoto, bucket: str) -> Callable[[str], Credential]:
    """Read-only credentials as the customer makes them: an IAM user with the vault's policy."""
    def make(prefix: str) -> Credential:
        user = iam.user(vault_policy(bucket, prefix))
        return Credential(user.access_key_id, user.secret_access_key)
    return make


@pytest.fixture
def vault_bucket(iam_s3: IamMoto, vault_s3_bucket: str) -> VaultBucket:
    prefix = f"p{secrets.token_hex(4)}"
    readers = iam_reader(iam_s3, vault_s3_bucket)
    return VaultBucket(
        url=iam_s3.endpoint.url, region=iam_s3.endpoint.region, bucket=vault_s3_bucket,
        prefix=prefix, owner=iam_s3.endpoint.client(), reader=readers(prefix), readers=readers,
    )


def kinds(doc: dict[str, Any]) -> set[str]:
    return {p["kind"] for p in doc["problems"]}
