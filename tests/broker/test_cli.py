"""The broker's command line: help, version, secrets, refusals, and operator commands."""

from __future__ import annotations

import subprocess
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3

from shared import version
from tests.support.api import (
    Api,
    Device,
    Tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerCommandError, BrokerProcess, base_env, broker_script


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(broker_script()), *args], capture_output=True, text=True,
        env=env if env is not None else base_env(), stdin=subprocess.DEVNULL, check=False,
        timeout=60,
    )


@pytest.mark.parametrize("script", ["bucketreel-broker", "bucketreel-agent"])
def test_help_and_version(script: str) -> None:
    path = broker_script().with_name(script)
    helped = subprocess.run([path, "--help"], capture_output=True, text=True, check=False)
    versioned = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0
    assert "usage:" in helped.stdout
    assert versioned.returncode == 0
    assert versioned.stdout.strip() == f"{script} {version()}"


def test_gen_secrets_prints_every_secret_fresh() -> None:
    first, second = run("gen-secrets"), run("gen-secrets")
    lines = [line for line in first.stdout.splitlines() if not line.startswith("#")]
    keys = {line.split("=", 1)[0] for line in lines}
    assert keys == {"BUCKETREEL_SECRET_KEY", "BUCKETREEL_HMAC_KEY", "BUCKETREEL_MASTER_KEYS",
                    "BUCKETREEL_SIGNING_KEY"}
    assert first.stdout != second.stdout


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("BUCKETREEL_SECRET_KEY", None, "BUCKETREEL_SECRET_KEY is missing"),
        ("BUCKETREEL_HMAC_KEY", "short", "BUCKETREEL_HMAC_KEY is too short"),
        ("BUCKETREEL_MASTER_KEYS", "v1:c2hvcnQ=", "BUCKETREEL_MASTER_KEYS v1 must be"),
        ("BUCKETREEL_SIGNING_KEY", "c2hvcnQ=", "BUCKETREEL_SIGNING_KEY must be the base64"),
    ],
)
def test_refuses_to_start_with_a_missing_or_weak_secret(
    broker: BrokerProcess, variable: str, value: str | None, said: str
) -> None:
    env = dict(broker.env)
    if value is None:
        del env[variable]
    else:
        env[variable] = value
    result = run("serve", "--port", "0", env=env)
    assert result.returncode == 78
    assert said in result.stderr
    assert broker.env.get(variable, "") not in result.stderr  # the real value is never echoed


def test_view_url_is_a_short_sigv4_get_that_plays_the_segment(
    api: Api, broker: BrokerProcess, device: Device, tenant: Tenant
) -> None:
    recording_id = start_recording(api, device)
    segment = random_segment()
    grant = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload", segment.declaration(),
        token=device.access_token,
    ).body
    put_with_grant(grant, segment.data)
    api.call("POST", f"/api/v1/recordings/{recording_id}/segments/0/complete",
             token=device.access_token)

    view = broker.admin("view-url", "--tenant", tenant.name, "--recording", recording_id,
                        "--seq", "0")

    query = parse_qs(urlsplit(view["url"]).query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert 0 < int(query["X-Amz-Expires"][0]) <= 120
    assert query["X-Amz-SignedHeaders"] == ["host"]
    fetched = urllib3.PoolManager().request("GET", view["url"])
    assert fetched.status == 200
    assert fetched.data == segment.data


def test_view_url_for_a_segment_not_verified_is_refused(
    api: Api, broker: BrokerProcess, device: Device, tenant: Tenant
) -> None:
    recording_id = start_recording(api, device)
    with pytest.raises(BrokerCommandError, match="segment 0 was never declared"):
        broker.admin("view-url", "--tenant", tenant.tenant_id, "--recording", recording_id,
                     "--seq", "0")


def test_weak_password_is_refused_with_a_clear_message(
    broker: BrokerProcess, tenant: Tenant
) -> None:
    with pytest.raises(BrokerCommandError, match="at least 12 characters") as raised:
        broker.admin("create-user", "--tenant", tenant.tenant_id, "--email", "w@example.test",
                     "--role", "employee", stdin="short\n")
    assert "exited with code 1" in str(raised.value)


def test_enrollment_code_expires_in_a_day(broker: BrokerProcess, device: Device) -> None:
    from datetime import UTC, datetime

    issued = broker.admin("enrollment-code", "--tenant", device.tenant.tenant_id,
                          "--user", device.user_id)
    left = datetime.fromisoformat(issued["expires_at"]) - datetime.now(UTC)
    assert 23.9 * 3600 < left.total_seconds() <= 24 * 3600
    assert issued["code"].startswith("bre_")


def test_an_unreachable_database_is_a_clear_error_without_the_password(
    broker: BrokerProcess,
) -> None:
    from tests.support.procs import free_port

    url = f"postgresql+asyncpg://app:hunter2-secret@127.0.0.1:{free_port()}/nothing"
    result = run("migrate", env={**broker.env, "BUCKETREEL_DATABASE_URL": url})
    assert result.returncode == 1
    assert "cannot open the database" in result.stderr
    assert "hunter2-secret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("prefix", ["rec/*", "a/../b"])
def test_a_prefix_that_would_widen_the_policy_is_refused(
    broker: BrokerProcess, tenant: Tenant, prefix: str
) -> None:
    """`*` is a wildcard in IAM resources and `..` climbs out: neither may name a prefix."""
    with pytest.raises(BrokerCommandError, match="prefix may hold") as raised:
        broker.admin("set-storage", "--tenant", tenant.tenant_id, "--bucket", tenant.bucket,
                     "--region", "eu-central-1", "--prefix", prefix, "--access-key-id", "AKIAX",
                     stdin="secret-secret\n")
    assert "exited with code 1" in str(raised.value)
