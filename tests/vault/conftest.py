"""Fixtures for the vault's tests: moto enforcing IAM, a bucket, and the customer's two hats.

  iam_s3        IamMoto: a moto server that enforces IAM (tests/storage/iam.py)
  vault_bucket  VaultBucket: a bucket and a fresh prefix; `owner` is the customer's own client
                (may write, copy and delete: how the tamper cases are made), `reader` the
                vault's credential, an IAM user with exactly `bucketreel-vault policy`
                (list the prefix, read under it); `.vault(...)` runs the console script with it
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.vault.policy import reader_policy
from tests.storage.conftest import iam_s3 as iam_s3
from tests.storage.iam import IamMoto, Principal
from tests.vault.bucketwriter import BucketWriter

VAULT = str(Path(sys.executable).with_name("bucketreel-vault"))


@dataclass
class VaultBucket:
    iam: IamMoto
    bucket: str
    prefix: str
    owner: Any
    reader: Principal

    def env(self, who: Principal | None = None) -> dict[str, str]:
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
        self, *args: str, prefix: str | None = None, who: Principal | None = None,
        cwd: Path | None = None, timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """`bucketreel-vault --bucket … --prefix … --endpoint-url … --region … <args>`."""
        base = [
            "--bucket", self.bucket, "--prefix", self.prefix if prefix is None else prefix,
            "--endpoint-url", self.iam.endpoint.url, "--region", self.iam.endpoint.region,
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

    def reader_for(self, prefix: str) -> Principal:
        return self.iam.user(reader_policy(self.bucket, prefix))


@pytest.fixture(scope="module")
def vault_s3_bucket(iam_s3: IamMoto) -> str:
    return iam_s3.endpoint.create_bucket()


@pytest.fixture
def vault_bucket(iam_s3: IamMoto, vault_s3_bucket: str) -> VaultBucket:
    prefix = f"p{secrets.token_hex(4)}"
    return VaultBucket(
        iam=iam_s3, bucket=vault_s3_bucket, prefix=prefix, owner=iam_s3.endpoint.client(),
        reader=iam_s3.user(reader_policy(vault_s3_bucket, prefix)),
    )


def kinds(doc: dict[str, Any]) -> set[str]:
    return {p["kind"] for p in doc["problems"]}
