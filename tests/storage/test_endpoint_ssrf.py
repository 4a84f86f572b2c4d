"""A tenant's `endpoint_url` cannot point the broker at its own network (SSRF).

The broker refuses hosts that are, or resolve to, loopback, private, link-local, CGNAT,
multicast, unspecified or metadata addresses (IPv4 and IPv6, IPv4 inside IPv6 too) unless
the operator allows them, refuses plain http outside development mode, connects only to the
address it checked, and tells a tenant's admin no more than reachable / refused / unreachable
about what answered at an endpoint the operator did not allow.

The strict broker here runs beside the suite's broker on the same database (both databases),
without the suite's allowance for moto on 127.0.0.1 (`tests/support/broker.py`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from broker import admin
from broker.errors import BrokerError
from broker.storage import selfcheck
from broker.storage.config import candidate
from broker.storage.endpoint import EndpointPolicy, EndpointRefused, why_not_public
from broker.storage.s3 import BucketClient, BucketClients, ObjectHead
from tests.identity.people import Client, Person, make_person, sign_in
from tests.support.api import Operator, Tenant
from tests.support.broker import ALLOWED_ENDPOINT_HOSTS_VAR, BrokerCommandError, BrokerProcess
from tests.support.procs import MissingDependencyError, ProcessStartError
from tests.support.s3 import S3Endpoint
from tests.support.tarpit import Tarpit


def _head(client: BucketClient, key: str) -> ObjectHead | None:
    """The broker's HeadObject with `client` (signed by it, sent on an event loop)."""
    return asyncio.run(BucketClients().head(client, key))


@pytest.fixture(scope="module")
def strict_broker(database_url: str, session_tmp: Path) -> Iterator[BrokerProcess]:
    with ExitStack() as stack:
        try:
            process = stack.enter_context(
                BrokerProcess(
                    database_url, extra_env={ALLOWED_ENDPOINT_HOSTS_VAR: ""},
                    log_dir=session_tmp / "logs",
                )
            )
        except (MissingDependencyError, ProcessStartError, BrokerCommandError) as err:
            pytest.fail(f"the strict broker could not start: {err}", pytrace=False)
        yield process


@pytest.fixture(scope="module")
def tarpit() -> Iterator[Tarpit]:
    with Tarpit() as pit:
        yield pit


@pytest.fixture(scope="module")
def boss(strict_broker: BrokerProcess) -> Person:
    name = f"tenant-{secrets.token_hex(4)}"
    tenant_id = Operator(strict_broker).run(admin.create_tenant, name=name)["tenant_id"]
    tenant = Tenant(tenant_id, name, "", "rec")
    return sign_in(Client(strict_broker.url), make_person(strict_broker, tenant, "admin"))


def storage_body(endpoint_url: str) -> dict[str, Any]:
    return {
        "bucket": "some-bucket", "region": "us-east-1", "endpoint_url": endpoint_url,
        "prefix": "rec", "access_key_id": "AKIAEXAMPLEKEY", "secret_access_key": "s" * 40,
    }


def internal_urls(pit: Tarpit) -> list[str]:
    port = pit.port
    return [
        f"http://127.0.0.1:{port}",  # plain http, and the loopback
        f"https://127.0.0.1:{port}",
        f"https://localhost:{port}",  # a name that resolves to the loopback
        f"https://[::1]:{port}",
        f"http://[::ffff:127.0.0.1]:{port}",  # IPv4-mapped IPv6
        f"https://[::ffff:127.0.0.1]:{port}",
        f"https://0.0.0.0:{port}",
        "https://10.0.0.1",
        "https://172.16.5.4",
        "https://192.168.1.1",
        "https://100.64.0.1",  # CGNAT
        "https://169.254.169.254",  # cloud metadata
        "https://[fd00:ec2::254]",  # AWS's IPv6 metadata address
        "https://[fe80::1]",
        "https://[fc00::1]",
        "https://224.0.0.1",
        "https://[ff02::1]",
        "https://[::]",
        "https://[2002:7f00:1::]",  # 6to4 wrapping 127.0.0.1
        "https://[64:ff9b::a00:1]",  # NAT64 wrapping 10.0.0.1
    ]


def test_endpoints_inside_the_network_are_refused_before_any_connection(
    strict_broker: BrokerProcess, boss: Person, tarpit: Tarpit
) -> None:
    client = Client(strict_broker.url)
    for url in internal_urls(tarpit):
        reply = client.call("PUT", "/api/v1/admin/storage", storage_body(url),
                            token=boss.access_token)
        assert reply.status == 400, (url, reply.status, reply.body)
        assert reply.body["error"] == "invalid_field", url
        assert "endpoint_url" in reply.body["message"], url
        check = client.call("POST", "/api/v1/admin/storage/check", token=boss.access_token)
        assert check.status == 409, "nothing was saved, so there is nothing to check"
    assert tarpit.accepted == 0, "the broker connected to an address it must refuse"
    status = client.call("GET", "/api/v1/admin/storage", token=boss.access_token)
    assert status.body["configured"] is False


def test_the_operator_allowance_is_by_host_and_port() -> None:
    policy = EndpointPolicy.from_setting("minio.internal:9000, 127.0.0.1", dev_mode=False)
    pinned = EndpointPolicy(
        allowed_hosts=policy.allowed_hosts, resolver=lambda host, port: ["10.1.2.3"]
    ).resolve("http://minio.internal:9000")
    assert (pinned.address, pinned.trusted) == ("10.1.2.3", True)
    for refused in ("http://minio.internal:9001", "https://minio.internal"):
        with pytest.raises(EndpointRefused, match="endpoint_url"):
            EndpointPolicy(
                allowed_hosts=policy.allowed_hosts, resolver=lambda host, port: ["10.1.2.3"]
            ).resolve(refused)
    assert policy.resolve("http://127.0.0.1:1234").trusted
    with pytest.raises(EndpointRefused, match="https"):
        policy.check_url("http://storage.example.com")
    with pytest.raises(EndpointRefused, match="not a valid URL"):
        policy.check_url("http://[::1")
    assert why_not_public(ipaddress.ip_address("8.8.8.8")) is None


def test_a_changed_dns_answer_is_never_used_the_connection_is_pinned(
    s3_endpoint: S3Endpoint,
) -> None:
    """The host is resolved once and checked; every connection goes to that address. A
    resolver that answers the moto address first and an internal one afterwards (DNS
    rebinding) stands in for a DNS server, which cannot run here; the name itself resolves
    nowhere, so only the pinned address can make the requests work."""
    port = s3_endpoint.url.rsplit(":", 1)[1]
    answers = iter([["127.0.0.1"]] + [["10.0.0.1"]] * 10)
    asked: list[str] = []

    def rebinding(host: str, _port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    policy = EndpointPolicy(
        allowed_hosts=frozenset({"moto.rebind.invalid"}), resolver=rebinding
    )
    bucket_name = s3_endpoint.create_bucket()
    config = candidate(
        "t-pin", bucket=bucket_name, region=s3_endpoint.region,
        endpoint_url=f"http://moto.rebind.invalid:{port}", prefix="rec",
        access_key_id=s3_endpoint.access_key_id, secret_access_key=s3_endpoint.secret_access_key,
        role_arn=None, external_id=None,
    )
    client = BucketClient(config, policy=policy)
    assert client.pinned is not None
    assert client.pinned.address == "127.0.0.1"
    for _ in range(3):
        assert _head(client, "rec/none-such") is None  # 404 from moto, through the pin
    assert asked == ["moto.rebind.invalid"]
    # Without the operator's allowance, the internal answer is refused when it is checked.
    strict = EndpointPolicy(resolver=rebinding)
    with pytest.raises(EndpointRefused, match="does not resolve to a public address"):
        strict.resolve(f"https://moto.rebind.invalid:{port}")
    with pytest.raises(EndpointRefused, match="is a private address"):
        strict.resolve("https://10.0.0.1")


def test_an_endpoint_the_operator_did_not_name_gets_only_coarse_outcomes(
    s3_endpoint: S3Endpoint,
) -> None:
    """In development mode the loopback is allowed without naming it; what answered there is
    still shown only as reachable / refused / unreachable, never a status or an XML code."""
    policy = EndpointPolicy(dev_mode=True)
    config = candidate(
        "t-coarse", bucket=s3_endpoint.create_bucket(), region=s3_endpoint.region,
        endpoint_url=s3_endpoint.url, prefix="rec", access_key_id=s3_endpoint.access_key_id,
        secret_access_key=s3_endpoint.secret_access_key, role_arn=None, external_id=None,
    )
    bucket = BucketClient(config, policy=policy, selfcheck=True)
    report = selfcheck.run(bucket, datetime.now(UTC))
    outcomes = {p.name: p.outcome for p in report.probes}
    assert outcomes["write"] == "reachable"
    assert set(outcomes.values()) <= {"reachable", "refused", "unreachable"}
    assert report.can_write
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()  # nothing listens there: the connection is refused
    nobody = BucketClient(
        candidate(
            "t-coarse", bucket=config.bucket, region=s3_endpoint.region,
            endpoint_url=f"http://127.0.0.1:{closed_port}", prefix="rec",
            access_key_id=s3_endpoint.access_key_id,
            secret_access_key=s3_endpoint.secret_access_key, role_arn=None, external_id=None,
        ),
        policy=policy,
    )
    with pytest.raises(BrokerError) as refused:
        _head(nobody, "rec/x")
    assert refused.value.message == "the bucket did not answer"
