"""The admin's storage over HTTP, on both databases: the policies route, the Storage page and
its forms, who may use them, the secret never shown, a failed self-check saving nothing, the
"access revoked" banner on every admin page, and the storage watch that finds a deactivated key
within its interval without any agent uploading.

Storage here is the strict SigV4 gate in front of moto (tests/support/s3gate.py), with a key of
its own per tenant; moto behind the gate enforces no IAM policy, so a working key's self-check
names every right too many (list, delete, ACL) and saving needs "accept the risk".
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from broker import admin
from broker.storage import policy
from tests.identity.people import Client, Person, audit_entries, login, mfa, person
from tests.identity.test_matrix import tenant_rows
from tests.storage.conftest import s3_gate as s3_gate
from tests.storage.conftest import setup_key as setup_key
from tests.storage.factory import BROKER_KEY_LABEL, GateTenant, make_gate_tenant
from tests.support.api import (
    Api,
    Operator,
    Reply,
    Tenant,
    enroll,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.postgres import PostgresServer
from tests.support.s3gate import AccessKey, S3Gate

FORM = "application/x-www-form-urlencoded"
HTML = {"Accept": "text/html"}
DOCUMENTS = ("identity_policy", "bucket_policy", "trust_policy")
BANNER = "Storage access revoked since"
WATCH_INTERVAL = 2  # seconds, the lowest BUCKETREEL_STORAGE_CHECK_INTERVAL allows
BROKER_ARN = "arn:aws:iam::210987654321:role/bucketreel-broker"


def new_tenant(broker: BrokerProcess) -> Tenant:
    name = f"tenant-{secrets.token_hex(4)}"
    return Tenant(Operator(broker).run(admin.create_tenant, name=name)["tenant_id"], name, "", "")


def page(api: Api, path: str, who: Person) -> Reply:
    return api.call("GET", path, token=who.access_token, headers=HTML)


def post_form(api: Api, path: str, who: Person | None, fields: dict[str, str],
              headers: dict[str, str] | None = None) -> Reply:
    return api.call(
        "POST", path, body=urlencode(fields).encode(),
        token=who.access_token if who else None,
        headers={"Content-Type": FORM, **HTML, **(headers or {})},
    )


def storage_fields(
    gate: S3Gate, bucket: str, key: AccessKey | None, **extra: str
) -> dict[str, str]:
    fields = {"bucket": bucket, "region": gate.region, "endpoint_url": gate.url,
              "prefix": "rec", "mode": "keys"}
    if key is not None:
        fields.update(access_key_id=key.key_id, secret_access_key=key.secret)
    fields.update(extra)
    return fields


def status_of(api: Api, who: Person) -> dict[str, Any]:
    reply = api.call("GET", "/api/v1/admin/storage", token=who.access_token)
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def text_of(reply: Reply) -> str:
    return reply.raw.decode()


# -- the policies route ----------------------------------------------------------------------


def test_the_policies_route_gives_the_documents_for_this_tenants_bucket(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    boss = person(api, broker, tenant, "admin")
    external_id = status_of(api, boss)["external_id"]

    reply = api.call("GET", "/api/v1/admin/storage/policies", token=boss.access_token)
    assert reply.status == 200, reply.body
    body = reply.body
    assert (body["bucket"], body["prefix"], body["external_id"]) == (
        tenant.bucket, tenant.prefix, external_id)
    assert body["placeholders"] == ["ACCOUNT_ID", "BROKER_ACCOUNT_ID"]
    assert body["principal_arn"] == policy.PRINCIPAL_PLACEHOLDER
    statement = body["identity_policy"]["Statement"][0]
    assert statement["Resource"] == f"arn:aws:s3:::{tenant.bucket}/{tenant.prefix}/*"
    assert statement["Action"] == ["s3:PutObject", "s3:GetObject"]
    trust = body["trust_policy"]["Statement"][0]
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": external_id}}
    # exactly what the operator's `iam-policy` command prints for the same bucket
    printed = json.loads(broker.cli(
        "iam-policy", "--bucket", tenant.bucket, "--prefix", tenant.prefix,
        "--external-id", external_id,
    ))
    assert printed == {name: body[name] for name in DOCUMENTS}
    with_vault = json.loads(broker.cli(
        "iam-policy", "--bucket", tenant.bucket, "--prefix", tenant.prefix, "--vault",
    ))
    assert body["vault_policy"] == with_vault["vault_policy"], "the customer's read policy too"
    assert not any("Put" in action or "Delete" in action
                   for s in body["vault_policy"]["Statement"] for action in s["Action"])

    principal = "arn:aws:iam::123456789012:user/bucketreel-broker"
    named = api.call("GET", "/api/v1/admin/storage/policies?" + urlencode(
        {"principal_arn": principal}), token=boss.access_token).body
    assert named["placeholders"] == ["BROKER_ACCOUNT_ID"]
    assert {s["Principal"]["AWS"] for s in named["bucket_policy"]["Statement"]} == {principal}


def test_policies_before_any_storage_is_saved_and_bad_queries(broker: BrokerProcess) -> None:
    api = Api(broker.url)
    tenant = new_tenant(broker)
    boss = person(api, broker, tenant, "admin")
    path = "/api/v1/admin/storage/policies"

    unsaved = api.call("GET", path, token=boss.access_token)
    assert (unsaved.status, unsaved.body["error"]) == (409, "storage_not_configured")
    planned = api.call("GET", f"{path}?bucket=acme-recordings&prefix=bucketreel/",
                       token=boss.access_token)
    assert planned.status == 200, planned.body
    assert planned.body["identity_policy"]["Statement"][0]["Resource"] == (
        "arn:aws:s3:::acme-recordings/bucketreel/*")
    assert planned.body["prefix"] == "bucketreel"
    for query, field in (("bucket=No_Such..Bucket", "bucket"), ("bucket=ok-bucket&prefix=a/../b",
                         "prefix"), ("bucket=ok-bucket&principal_arn=someone", "principal ARN"),
                         ("bucket=ok-bucket&principal_arn=" + "a" * 3000, "principal_arn")):
        refused = api.call("GET", f"{path}?{query}", token=boss.access_token)
        assert (refused.status, refused.body["error"]) == (400, "invalid_field"), query
        assert field in refused.body["message"], (query, refused.body)
    # the page shows the same documents for a bucket named in its query
    shown = page(api, "/admin/storage?bucket=acme-recordings&prefix=bucketreel", boss)
    assert shown.status == 200
    assert "arn:aws:s3:::acme-recordings/bucketreel/*" in text_of(shown)


def test_only_admins_reach_the_storage_routes_and_pages(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    before = tenant_rows(broker.database_url, tenant.tenant_id)
    fields = storage_fields(s3_gate, tenant.bucket, s3_gate.keys.add(label=BROKER_KEY_LABEL),
                            accept_risk="1")
    for role in ("manager", "employee"):
        who = person(api, broker, tenant, role)
        for path in ("/api/v1/admin/storage/policies", "/api/v1/admin/storage"):
            denied = api.call("GET", path, token=who.access_token)
            assert (denied.status, denied.body["error"]) == (403, "forbidden"), (role, path)
        shown = page(api, "/admin/storage", who)
        assert shown.status == 403, role
        assert "text/html" in shown.headers["Content-Type"]
        for path in ("/admin/storage", "/admin/storage/check"):
            assert post_form(api, path, who, fields).status == 403, (role, path)
    assert post_form(api, "/admin/storage", None, fields).status == 303  # to the sign-in page
    after = tenant_rows(broker.database_url, tenant.tenant_id)
    for table in ("storage_configs", "storage_access"):
        assert after[table] == before[table], table


# -- the page and its forms ------------------------------------------------------------------


def browser_session(api: Api, who: Person) -> tuple[str, str]:
    """Sign in again, as a browser does (cookies): the Cookie header and the CSRF token."""
    step = login(api, who)
    assert step.body["mfa"] == "totp", step.body
    done = mfa(api, step.body["challenge"], who.next_code(), cookie=True)
    assert done.status == 200, done.body
    pairs = re.findall(r"(bucketreel_(?:session|csrf))=([^;,\s]+)", done.headers["Set-Cookie"])
    return "; ".join(f"{name}={value}" for name, value in pairs), done.body["csrf_token"]


def test_the_page_saves_through_the_self_check_and_never_shows_the_secret(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Client(broker.url)
    tenant = new_tenant(broker)
    bucket = s3_gate.endpoint(setup_key).create_bucket()
    boss = person(api, broker, tenant, "admin")
    cookie, csrf = browser_session(api, boss)
    first, second = (s3_gate.keys.add(label=BROKER_KEY_LABEL) for _ in range(2))
    secrets_given = (first.secret, second.secret)
    replies: list[Reply] = []

    def keep(reply: Reply) -> Reply:
        replies.append(reply)
        return reply

    empty = keep(api.call("GET", "/admin/storage", headers={"Cookie": cookie, **HTML}))
    assert empty.status == 200
    assert "No bucket is set up yet" in text_of(empty)

    # the form without its CSRF token: refused, nothing saved
    forged = keep(post_form(api, "/admin/storage", None,
                            storage_fields(s3_gate, bucket, first, accept_risk="1"),
                            headers={"Cookie": cookie}))
    assert forged.status == 403
    assert status_of(api, boss)["configured"] is False

    fields = storage_fields(s3_gate, bucket, first, accept_risk="1", csrf_token=csrf)
    saved = keep(post_form(api, "/admin/storage", None, fields, headers={"Cookie": cookie}))
    assert (saved.status, saved.headers["Location"]) == (303, "/admin/storage?done=saved")
    shown = keep(api.call("GET", "/admin/storage?done=saved", headers={"Cookie": cookie, **HTML}))
    html = text_of(shown)
    assert shown.status == 200
    assert "Saved: the self-check passed" in html
    for value in (bucket, s3_gate.region, s3_gate.url, first.key_id, "Access works"):
        assert value in html, value
    assert status_of(api, boss)["external_id"] in html
    assert 'name="secret_access_key" type="password" maxlength="256" value=""' in html
    for pre in ("identity-policy", "bucket-policy", "trust-policy", "vault-policy"):
        assert f'<pre id="{pre}" class="policy">' in html
    # every right too many, in plain words, with what to remove
    assert "can list what the bucket holds" in html
    assert "Remove s3:ListBucket" in html
    assert "Remove s3:DeleteObject" in html

    # the API's save of the second key, its check, its status, the policies, the audit export
    keep(api.call("PUT", "/api/v1/admin/storage", {
        "bucket": bucket, "region": s3_gate.region, "endpoint_url": s3_gate.url, "prefix": "rec",
        "access_key_id": second.key_id, "secret_access_key": second.secret, "accept_risk": True,
    }, token=boss.access_token))
    assert replies[-1].status == 200, replies[-1].body
    checked = keep(post_form(api, "/admin/storage/check", None, {"csrf_token": csrf},
                             headers={"Cookie": cookie}))
    assert (checked.status, checked.headers["Location"]) == (303, "/admin/storage?done=checked")
    for path in ("/api/v1/admin/storage", "/api/v1/admin/storage/policies",
                 "/api/v1/admin/audit/export", "/admin/storage", "/audit"):
        keep(api.call("GET", path, token=boss.access_token, headers=HTML))
        assert replies[-1].status == 200, path
    assert second.key_id in text_of(replies[-2])
    assert status_of(api, boss)["credential_version"] == 2
    audit = [e.action for e in audit_entries(broker, tenant.tenant_id)]
    assert audit.count("storage.set") == 2
    assert audit.count("storage.risk_accepted") == 2
    assert "storage.check" in audit
    for reply in replies:
        for secret in secrets_given:
            assert secret.encode() not in reply.raw, reply.status


def test_a_failed_self_check_saves_nothing_and_the_page_says_why(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    boss = person(api, broker, tenant, "admin")
    before = tenant_rows(broker.database_url, tenant.tenant_id)
    unknown = AccessKey("AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30))

    # keys the bucket refuses: no risk to accept, refused whatever the caller says
    refused = api.call("PUT", "/api/v1/admin/storage", {
        "bucket": tenant.bucket, "region": s3_gate.region, "endpoint_url": s3_gate.url,
        "prefix": "other", "access_key_id": unknown.key_id, "secret_access_key": unknown.secret,
        "accept_risk": True,
    }, token=boss.access_token)
    assert (refused.status, refused.body["error"]) == (409, "conflict"), refused.body
    assert "cannot_write" in refused.body["message"]
    assert "Nothing was saved" in refused.body["message"]

    fields = storage_fields(s3_gate, tenant.bucket, unknown, prefix="other", accept_risk="1")
    again = post_form(api, "/admin/storage", boss, fields)
    html = text_of(again)
    assert again.status == 409
    assert "text/html" in again.headers["Content-Type"]
    assert "The self-check failed: nothing was saved." in html
    assert "could not create an object in the bucket" in html
    # what was typed is kept, but the secret
    for name in ("bucket", "region", "endpoint_url", "prefix", "access_key_id"):
        assert f'name="{name}"' in html
        assert f'value="{fields[name]}"' in html, name
    assert unknown.secret not in html
    assert 'type="password" maxlength="256" value=""' in html

    # a working key with rights too many, without accepting the risk: refused, said plainly
    wide = s3_gate.keys.add(label=BROKER_KEY_LABEL)
    risky = post_form(api, "/admin/storage", boss, storage_fields(s3_gate, tenant.bucket, wide))
    assert risky.status == 409
    assert "can delete objects" in text_of(risky)
    assert 'tick "save anyway"' in text_of(risky)
    # a field the model refuses: 400 naming it
    bad = post_form(api, "/admin/storage", boss,
                    storage_fields(s3_gate, "x" * 64, wide, accept_risk="1"))
    assert bad.status == 400
    assert "bucket" in text_of(bad)
    nomode = post_form(api, "/admin/storage", boss, storage_fields(s3_gate, tenant.bucket, wide,
                                                                    mode="both"))
    assert (nomode.status, "mode: choose" in text_of(nomode)) == (400, True)

    assert tenant_rows(broker.database_url, tenant.tenant_id) == before  # nothing, not audit
    assert status_of(api, boss)["access_key_id"] == tenant.key.key_id


# -- "access revoked" on every admin page ----------------------------------------------------


def test_every_admin_page_shows_access_revoked_until_a_new_key_is_saved(
    broker: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(broker.url)
    tenant = make_gate_tenant(broker, s3_gate, setup_key)
    boss = person(api, broker, tenant, "admin")
    manager = person(api, broker, tenant, "manager")
    admin_pages = ("/", "/audit", "/receipts", "/admin/storage")
    for path in admin_pages:
        assert BANNER not in text_of(page(api, path, boss)), path

    s3_gate.keys.deactivate(tenant.key.key_id)  # the customer rotates the broker out
    checked = post_form(api, "/admin/storage/check", boss, {})  # the self-check cannot write
    assert checked.status == 303
    assert status_of(api, boss)["state"] == "access_revoked"
    for path in admin_pages:
        html = text_of(page(api, path, boss))
        assert BANNER in html, path
        assert '<a href="/admin/storage">open Storage</a> to hand the broker a new key' in html
    assert "Access revoked since" in text_of(page(api, "/admin/storage", boss))
    assert BANNER not in text_of(page(api, "/", manager))  # storage is the admins' business

    new_key = s3_gate.keys.add(label=BROKER_KEY_LABEL)
    saved = post_form(api, "/admin/storage", boss,
                      storage_fields(s3_gate, tenant.bucket, new_key, accept_risk="1"))
    assert saved.status == 303, text_of(saved)
    for path in admin_pages:
        assert BANNER not in text_of(page(api, path, boss)), path
    assert status_of(api, boss)["state"] == "ok"


# -- the storage watch -----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def watching(request: pytest.FixtureRequest, session_tmp: Path) -> Iterator[BrokerProcess]:
    """A broker of its own database that checks every tenant's storage every 2 s, and knows
    its own AWS identity (`BUCKETREEL_BROKER_ARN`)."""
    if request.param == "sqlite":
        directory = session_tmp / f"watch-{secrets.token_hex(4)}"
        directory.mkdir()
        url = f"sqlite+aiosqlite:///{directory / 'broker.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        from tests.conftest import BROKER_DB_ROLE

        url = server.create_database(f"watch_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE)
    env = {"BUCKETREEL_STORAGE_CHECK_INTERVAL": str(WATCH_INTERVAL),
           "BUCKETREEL_BROKER_ARN": BROKER_ARN}
    with BrokerProcess(url, extra_env=env, log_dir=session_tmp / "logs") as process:
        yield process


def wait_for(what: str, test: Any, timeout: float) -> float:
    started = time.monotonic()
    while not test():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - started


def test_the_watch_finds_a_deactivated_key_without_any_upload(
    watching: BrokerProcess, s3_gate: S3Gate, setup_key: AccessKey
) -> None:
    api = Api(watching.url)
    cut, kept = (make_gate_tenant(watching, s3_gate, setup_key) for _ in range(2))
    boss, other = person(api, watching, cut, "admin"), person(api, watching, kept, "admin")
    assert status_of(api, boss)["state"] == "ok"

    s3_gate.keys.deactivate(cut.key.key_id)
    took = wait_for("access_revoked", lambda: status_of(api, boss)["state"] == "access_revoked",
                    timeout=5 * WATCH_INTERVAL + 10)
    assert took < 60
    revoked = status_of(api, boss)
    assert "403" in revoked["state_reason"]
    assert BANNER in text_of(page(api, "/", boss))
    refused = [e for e in s3_gate.log.entries(cut.key.key_id)
               if e.name == "HeadObject" and "/_bucketreel/selfcheck/" in e.path
               and e.status == 403]
    assert refused, "the watch asks about the self-check's object"
    time.sleep(2 * WATCH_INTERVAL)
    assert status_of(api, other)["state"] == "ok"  # the other tenant's key still works
    assert [e.action for e in audit_entries(watching, cut.tenant_id)].count(
        "storage.access_revoked") == 1  # marked once, not at every round

    rotated = rotate(watching, s3_gate, cut)
    assert status_of(api, boss)["state"] == "ok"
    time.sleep(2 * WATCH_INTERVAL)  # rounds with the new key: access stays good
    assert status_of(api, boss)["state"] == "ok"
    assert any(e.name == "HeadObject" and e.status == 200
               for e in s3_gate.log.entries(rotated.key_id))
    device = enroll(api, watching, cut)
    recording = start_recording(api, device)
    segment = random_segment(4096)
    grant = api.call("POST", f"/api/v1/recordings/{recording}/segments/0/upload",
                     segment.declaration(), token=device.access_token)
    assert grant.status == 200, grant.body
    assert f"X-Amz-Credential={rotated.key_id}" in grant.body["url"]
    assert put_with_grant(grant.body, segment.data).status == 200


def rotate(broker: BrokerProcess, gate: S3Gate, tenant: GateTenant) -> AccessKey:
    new_key = gate.keys.add(label=BROKER_KEY_LABEL)
    Operator(broker).run(
        admin.set_storage, tenant=tenant.tenant_id, bucket=tenant.bucket, region=gate.region,
        endpoint_url=gate.url, prefix=tenant.prefix, access_key_id=new_key.key_id,
        secret_access_key=new_key.secret, accept_risk=True,  # moto has no IAM behind the gate
    )
    return new_key


def test_a_broker_that_knows_its_own_identity_names_it_in_the_trust_policy(
    watching: BrokerProcess,
) -> None:
    api = Api(watching.url)
    tenant = new_tenant(watching)
    boss = person(api, watching, tenant, "admin")
    reply = api.call("GET", "/api/v1/admin/storage/policies?bucket=acme-recordings",
                     token=boss.access_token)
    assert reply.status == 200, reply.body
    assert reply.body["assumer_arn"] == BROKER_ARN
    [trust] = reply.body["trust_policy"]["Statement"]
    assert trust["Principal"] == {"AWS": BROKER_ARN}
    assert reply.body["placeholders"] == ["ACCOUNT_ID"], "nothing to ask the operator for"
    html = page(api, "/admin/storage?bucket=acme-recordings", boss).raw.decode()
    assert "ACCOUNT_ID: your AWS account" in html
    assert "BROKER_ACCOUNT_ID" not in html
