"""Fixtures for the bucket tests: the strict S3 gate (tests/support/s3gate.py) in front of moto.

  s3_gate    S3Gate: session-wide, on a free loopback port, forwarding to `s3_endpoint`
  setup_key  AccessKey: the tests' own set-up key (buckets, reading back), never the broker's
  iam_s3     IamMoto: another moto server, enforcing IAM policies (users, roles, STS)

At the end of the session every request the gate saw from a key labelled "broker" (the keys the
factory gives tenants) is checked: what those keys' signatures authorised is only PutObject,
GetObject and HeadObject (DESIGN G2/G3), plus the storage self-check's probes exactly as it
sends them (ListObjectsV2 of `…/_bucketreel/selfcheck/` for one key, DeleteObject and
PutObjectAcl of a `…/_bucketreel/selfcheck/<random>` key; factory.is_selfcheck_probe) and
nothing else. A violation fails the session's teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.storage.factory import BROKER_KEY_LABEL, BROKER_OPERATIONS, broker_may
from tests.storage.iam import IamMoto, iam_moto
from tests.support.s3 import S3Endpoint
from tests.support.s3gate import AccessKey, S3Gate, run_s3_gate


@pytest.fixture(scope="session")
def s3_gate(s3_endpoint: S3Endpoint) -> Iterator[S3Gate]:
    with run_s3_gate(s3_endpoint) as gate:
        yield gate
        beyond = sorted({
            (entry.name, entry.method, entry.path)
            for entry in gate.log.entries()
            if entry.label == BROKER_KEY_LABEL and entry.signed_ok and not broker_may(entry)
        })
        if beyond:
            pytest.fail(
                "a broker key authorised S3 operations beyond "
                f"{sorted(BROKER_OPERATIONS)} and the self-check's probes: {beyond}",
                pytrace=False,
            )


@pytest.fixture(scope="session")
def setup_key(s3_gate: S3Gate) -> AccessKey:
    return s3_gate.keys.add(label="test-setup")


@pytest.fixture(scope="session")
def iam_s3(session_tmp: Path) -> Iterator[IamMoto]:
    """A second moto server that enforces IAM (tests/storage/iam.py)."""
    with iam_moto(session_tmp / "logs") as server:
        yield server
