"""The storage self-check against moto with IAM enforced: an over-privileged principal gets
named red findings (and saving needs --accept-risk, audited); the minimal identity policy from
`bucketreel-broker iam-policy` gets none, but for one documented moto deviation.

moto deviation (stated, not bent to): S3 answers a HeadObject on a missing key with 403 unless
the principal holds s3:ListBucket; moto answers 404 to any principal allowed s3:GetObject. So
against moto the minimal policy shows `missing_keys_answer_404`; against S3 it would not. The
product keeps S3's meaning.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from typing import Any

import pytest

from broker import admin
from broker.storage import policy
from tests.identity.people import audit_entries, person
from tests.storage.iam import IamMoto, Principal
from tests.support.api import Api, Operator, Tenant
from tests.support.broker import BrokerCommandError, BrokerProcess, broker_script

EVERY_FINDING_BUT_WRITE = {"can_list", "can_delete", "can_change_acl", "missing_keys_answer_404"}
MOTO_HEAD_DEVIATION = {"missing_keys_answer_404"}
S3_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def new_tenant(broker: BrokerProcess) -> str:
    return named_tenant(broker).tenant_id


def named_tenant(broker: BrokerProcess) -> Tenant:
    name = f"tenant-{secrets.token_hex(4)}"
    return Tenant(broker.admin("create-tenant", name)["tenant_id"], name, "", "rec")


def set_storage_cli(broker: BrokerProcess, iam_s3: IamMoto, tenant_id: str, bucket: str,
                    who: Principal, *extra: str) -> dict[str, Any]:
    return broker.admin(
        "set-storage", "--tenant", tenant_id, "--bucket", bucket, "--region",
        iam_s3.endpoint.region, "--endpoint-url", iam_s3.endpoint.url, "--prefix", "rec",
        "--access-key-id", who.access_key_id, *extra, stdin=who.secret_access_key + "\n",
    )


def findings(check: dict[str, Any]) -> set[str]:
    return {f["name"] for f in check["findings"]}


def probes(check: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["outcome"].split()[0] for p in check["probes"]}


def test_an_s3_star_principal_is_refused_unless_the_risk_is_accepted(
    broker: BrokerProcess, iam_s3: IamMoto
) -> None:
    bucket = iam_s3.endpoint.create_bucket()
    wide = iam_s3.user(S3_ALL)
    tenant_id = new_tenant(broker)

    with pytest.raises(BrokerCommandError) as refused:
        set_storage_cli(broker, iam_s3, tenant_id, bucket, wide)
    message = str(refused.value)
    assert "exited with code 1" in message
    for name in EVERY_FINDING_BUT_WRITE:
        assert name in message
    assert "Nothing was saved" in message
    assert wide.secret_access_key not in message
    assert broker.admin("storage", "--tenant", tenant_id)["configured"] is False

    saved = set_storage_cli(broker, iam_s3, tenant_id, bucket, wide, "--accept-risk")
    assert findings(saved["check"]) == EVERY_FINDING_BUT_WRITE
    assert all(f["severity"] == "red" for f in saved["check"]["findings"])
    outcomes = probes(saved["check"])
    assert (outcomes["write"], outcomes["list"], outcomes["acl"], outcomes["head"]) == (
        "200", "200", "200", "404")
    assert outcomes["delete"] != "403"  # allowed (moto: 204, or 412 for the bogus If-Match)
    accepted = [e for e in audit_entries(broker, tenant_id) if e.action == "storage.risk_accepted"]
    assert len(accepted) == 1
    assert set(accepted[0].details["findings"]) == EVERY_FINDING_BUT_WRITE

    # The report is printed either way; findings make the command fail (exit 1) for scripts.
    ran = subprocess.run(
        [str(broker_script()), "admin", "check-storage", "--tenant", tenant_id],
        env=broker.env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    checked = json.loads(ran.stdout)
    assert checked["state"] == "ok"
    assert findings(checked["last_check"]) == EVERY_FINDING_BUT_WRITE
    assert checked["access_key_id"] == wide.access_key_id
    assert wide.secret_access_key not in str(checked)


def test_the_minimal_policy_has_no_findings_but_the_moto_head_deviation(
    broker: BrokerProcess, iam_s3: IamMoto
) -> None:
    bucket = iam_s3.endpoint.create_bucket()
    minimal = iam_s3.user(policy.identity_policy(bucket, "rec"))
    tenant_id = new_tenant(broker)

    saved = Operator(broker).run(
        admin.set_storage, tenant=tenant_id, bucket=bucket, region=iam_s3.endpoint.region,
        endpoint_url=iam_s3.endpoint.url, prefix="rec", access_key_id=minimal.access_key_id,
        secret_access_key=minimal.secret_access_key,
        accept_risk=True,  # only for the moto HEAD deviation, asserted just below
    )

    check = saved["check"]
    assert check["can_write"] is True
    assert findings(check) == MOTO_HEAD_DEVIATION  # on S3: no finding at all
    outcomes = {p["name"]: p["outcome"] for p in check["probes"]}
    assert outcomes["write"] == "200"
    assert outcomes["list"] == "403 AccessDenied"
    assert outcomes["delete"] == "403 AccessDenied"
    assert outcomes["acl"] == "403 AccessDenied"
    assert outcomes["head"].startswith("404")  # S3: 403 (no s3:ListBucket); moto: 404
    # the write probe's object is there, under the prefix, and it is the tenant's canary
    listed = iam_s3.endpoint.client().list_objects_v2(
        Bucket=bucket, Prefix="rec/_bucketreel/selfcheck/"
    ).get("Contents", [])
    assert len(listed) == 1
    body = iam_s3.endpoint.client().get_object(Bucket=bucket, Key=listed[0]["Key"])["Body"]
    assert body.read().startswith(b"bucketreel self-check ")


def test_the_admin_api_shows_checks_and_refuses_risky_storage(
    broker: BrokerProcess, iam_s3: IamMoto
) -> None:
    api = Api(broker.url)
    bucket = iam_s3.endpoint.create_bucket()
    minimal = iam_s3.user(policy.identity_policy(bucket, "rec"))
    wide = iam_s3.user(S3_ALL)
    tenant = named_tenant(broker)
    tenant_id = tenant.tenant_id
    boss = person(api, broker, tenant, "admin")
    worker = person(api, broker, tenant, "employee")
    body = {
        "bucket": bucket, "region": iam_s3.endpoint.region, "endpoint_url": iam_s3.endpoint.url,
        "prefix": "rec", "access_key_id": wide.access_key_id,
        "secret_access_key": wide.secret_access_key,
    }

    refused = api.call("PUT", "/api/v1/admin/storage", body, token=boss.access_token)
    assert (refused.status, refused.body["error"]) == (409, "conflict"), refused.body
    assert "can_list" in refused.body["message"]
    assert api.call("GET", "/api/v1/admin/storage", token=boss.access_token).body[
        "configured"] is False
    body.update(access_key_id=minimal.access_key_id, secret_access_key=minimal.secret_access_key,
                accept_risk=True)
    saved = api.call("PUT", "/api/v1/admin/storage", body, token=boss.access_token)
    assert saved.status == 200, saved.body
    assert findings(saved.body["check"]) == MOTO_HEAD_DEVIATION
    assert minimal.secret_access_key not in saved.raw.decode()

    checked = api.call("POST", "/api/v1/admin/storage/check", token=boss.access_token)
    assert checked.status == 200, checked.body
    assert (checked.body["state"], checked.body["auth_mode"]) == ("ok", "keys")
    assert findings(checked.body["last_check"]) == MOTO_HEAD_DEVIATION
    assert checked.body["external_id"].startswith("bucketreel-")
    assert minimal.secret_access_key not in checked.raw.decode()
    for method, path in (("GET", ""), ("PUT", ""), ("POST", "/check")):
        denied = api.call(method, "/api/v1/admin/storage" + path, body if method == "PUT"
                          else None, token=worker.access_token)
        assert denied.status == 403, (method, path)
    actions = [e.action for e in audit_entries(broker, tenant_id)]
    assert "storage.set" in actions
    assert "storage.check" in actions

