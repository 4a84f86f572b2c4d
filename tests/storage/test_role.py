"""The role option through moto's STS and IAM (enforced): the broker assumes the tenant's role
with the tenant's external ID, using its own base credentials from its settings, and signs
with the 15-minute session (URLs carry X-Amz-Security-Token). Storage switches between the
role and static keys, through the admin API and the CLI, without restarting the broker.

moto deviation (stated): with IAM enforced, moto's server answers 500 to the broker's
presigned PUT URLs (with or without X-Amz-Security-Token), while it checks header-signed
requests, with or without a session token, properly. So here the self-check (header-signed:
write allowed, list/delete/ACL denied by the role's policy) and the broker's HeadObject at
completion are checked by moto, and the segment is stored by the test's administrator at the
granted key, as the agent's PUT would store it. Presigned URLs themselves are checked by the
strict SigV4 gate (tests/storage/test_presigned_urls.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.storage import policy
from tests.identity.people import person
from tests.storage.iam import IamMoto
from tests.storage.test_selfcheck import MOTO_HEAD_DEVIATION, findings, named_tenant
from tests.support.api import Api, Device, enroll, random_segment, start_recording
from tests.support.broker import BrokerCommandError, BrokerProcess

ASSUME_ANY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}],
}


@pytest.fixture(scope="module")
def role_broker(
    database_url: str, iam_s3: IamMoto, session_tmp: Path
) -> Iterator[tuple[BrokerProcess, Any]]:
    """A broker whose own AWS identity (settings) may assume roles, STS being moto's."""
    base = iam_s3.user(ASSUME_ANY, name=f"bucketreel-broker-{secrets.token_hex(3)}")
    env = {
        "BUCKETREEL_AWS_ACCESS_KEY_ID": base.access_key_id,
        "BUCKETREEL_AWS_SECRET_ACCESS_KEY": base.secret_access_key,
        "BUCKETREEL_STS_ENDPOINT_URL": iam_s3.endpoint.url,
    }
    with BrokerProcess(database_url, extra_env=env, log_dir=session_tmp / "logs") as broker:
        yield broker, base


def upload_one(api: Api, device: Device, iam_s3: IamMoto) -> dict[str, Any]:
    """Grant, PUT, complete one segment; returns the grant's query parameters."""
    recording_id = start_recording(api, device)
    segment = random_segment(2048)
    path = f"/api/v1/recordings/{recording_id}/segments/0"
    grant = api.call("POST", f"{path}/upload", segment.declaration(), token=device.access_token)
    assert grant.status == 200, grant.body
    query = {k: v[0] for k, v in parse_qs(urlsplit(grant.body["url"]).query).items()}
    assert grant.body["headers"]["If-None-Match"] == "*"
    bucket, key = urlsplit(grant.body["url"]).path.lstrip("/").split("/", 1)
    iam_s3.endpoint.client().put_object(Bucket=bucket, Key=key, Body=segment.data)  # deviation
    done = api.call("POST", f"{path}/complete", token=device.access_token)
    assert (done.status, done.body) == (200, {"state": "verified"})
    return query


def test_role_with_external_id_then_keys_then_role_without_restart(
    role_broker: tuple[BrokerProcess, Any], iam_s3: IamMoto
) -> None:
    broker, base = role_broker
    api = Api(broker.url)
    bucket = iam_s3.endpoint.create_bucket()
    tenant = named_tenant(broker)
    external_id = broker.admin("storage", "--tenant", tenant.tenant_id)["external_id"]
    assert external_id == broker.admin("storage", "--tenant", tenant.tenant_id)["external_id"]
    documents = json.loads(broker.cli(
        "iam-policy", "--bucket", bucket, "--prefix", "rec", "--assumer-arn", base.arn,
        "--external-id", external_id,
    ))
    role_arn = iam_s3.role(documents["trust_policy"], documents["identity_policy"])

    saved = broker.admin(
        "set-storage", "--tenant", tenant.tenant_id, "--bucket", bucket, "--region",
        iam_s3.endpoint.region, "--endpoint-url", iam_s3.endpoint.url, "--prefix", "rec",
        "--role-arn", role_arn, "--accept-risk",  # moto's HEAD deviation only (asserted)
    )
    assert saved["auth_mode"] == "role"
    assert findings(saved["check"]) == MOTO_HEAD_DEVIATION
    device = enroll(api, broker, tenant)
    signed = upload_one(api, device, iam_s3)
    assert "X-Amz-Security-Token" in signed
    assert not signed["X-Amz-Credential"].startswith(base.access_key_id)
    assert int(signed["X-Amz-Expires"]) <= 300

    # the admin API swaps in static keys: the very next grant signs with them
    boss = person(api, broker, tenant, "admin")
    keys = iam_s3.user(policy.identity_policy(bucket, "rec"))
    swapped = api.call("PUT", "/api/v1/admin/storage", {
        "bucket": bucket, "region": iam_s3.endpoint.region,
        "endpoint_url": iam_s3.endpoint.url, "prefix": "rec",
        "access_key_id": keys.access_key_id, "secret_access_key": keys.secret_access_key,
        "accept_risk": True,
    }, token=boss.access_token)
    assert swapped.status == 200, swapped.body
    assert swapped.body["auth_mode"] == "keys"
    signed = upload_one(api, device, iam_s3)
    assert "X-Amz-Security-Token" not in signed
    assert signed["X-Amz-Credential"].startswith(keys.access_key_id + "/")

    # ...and back to the role with the CLI
    broker.admin(
        "set-storage", "--tenant", tenant.tenant_id, "--bucket", bucket, "--region",
        iam_s3.endpoint.region, "--endpoint-url", iam_s3.endpoint.url, "--prefix", "rec",
        "--role-arn", role_arn, "--accept-risk",
    )
    status = api.call("GET", "/api/v1/admin/storage", token=boss.access_token).body
    assert (status["auth_mode"], status["role_arn"], status["access_key_id"]) == (
        "role", role_arn, None)
    assert status["external_id"] == external_id
    assert "X-Amz-Security-Token" in upload_one(api, device, iam_s3)


def test_a_role_trusting_another_external_id_is_refused(
    role_broker: tuple[BrokerProcess, Any], iam_s3: IamMoto
) -> None:
    broker, base = role_broker
    bucket = iam_s3.endpoint.create_bucket()
    tenant = named_tenant(broker)
    trust = policy.trust_policy(base.arn, "somebody-elses-external-id")
    role_arn = iam_s3.role(trust, policy.identity_policy(bucket, "rec"))

    with pytest.raises(BrokerCommandError) as refused:
        broker.admin(
            "set-storage", "--tenant", tenant.tenant_id, "--bucket", bucket, "--region",
            iam_s3.endpoint.region, "--endpoint-url", iam_s3.endpoint.url, "--prefix", "rec",
            "--role-arn", role_arn,
        )
    assert "cannot_write" in str(refused.value)
    assert "STS refused to let the broker assume" in str(refused.value)
    assert broker.admin("storage", "--tenant", tenant.tenant_id)["configured"] is False
