"""Three broker replicas behind HAProxy (Debian's) on one PostgreSQL: the real agent records on
Xvfb through the balancer while one replica is killed with SIGKILL and started again, and
then another is stopped with SIGTERM (it drains). Every
segment arrives once, in order, verified (in the bucket, by the broker's API and by the
custody check); people sign in with TOTP and watch through view URLs throughout.

Every wait is on a condition with a deadline: the agent's log, the balancer's view of each
replica (its admin socket), the restarted replica's own access log. Nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3

from broker import admin
from shared.bucket.keys import MANIFEST_NAME
from tests.conftest import BROKER_DB_ROLE, _start
from tests.identity.people import Client, Person, login_again, make_person, sign_in
from tests.resilience.helpers import AGENT, agent_env, decoded_frames, running, uploaded_seqs
from tests.support.api import Api, Operator, Tenant, enrollment_code, make_tenant, make_user
from tests.support.broker import BrokerProcess
from tests.support.display import XDisplay
from tests.support.haproxy import Balancer, config, run_haproxy
from tests.support.postgres import PostgresServer
from tests.support.procs import pid_alive
from tests.support.replicas import run_replicas, until
from tests.support.s3 import S3Endpoint

README = Path(__file__).resolve().parents[2] / "README.md"
REPLICAS = 3
# The balancer passes the client's address; the broker's login limits count it.
# Draining lasts the balancer's check interval times its fall count (tests/support/haproxy.py).
REPLICA_ENV = {
    "BUCKETREEL_CLIENT_ADDRESS_HEADER": "X-Forwarded-For",
    "BUCKETREEL_DRAIN_SECONDS": "1",
}
SHORT = ("--fps", "2", "--segment-seconds", "1")


@dataclass(frozen=True)
class Cluster:
    replicas: list[BrokerProcess]
    balancer: Balancer

    @property
    def names(self) -> list[str]:
        return [f"broker{i + 1}" for i in range(len(self.replicas))]


@pytest.fixture
def cluster(
    postgres_server: PostgresServer, session_tmp: Path
) -> Iterator[Cluster]:
    database = postgres_server.create_database(
        f"replicas_{secrets.token_hex(4)}", owner=BROKER_DB_ROLE
    )
    logs = session_tmp / "logs"
    names = [f"broker{i + 1}" for i in range(REPLICAS)]
    with ExitStack() as stack:
        replicas = _start("the broker replicas", stack, run_replicas(
            database, REPLICAS, extra_env=REPLICA_ENV, log_dir=logs
        ))
        balancer = _start("HAProxy", stack, run_haproxy(
            list(zip(names, [r.port for r in replicas], strict=True)), log_dir=logs
        ))
        for name in names:
            balancer.wait_state(name, "UP")
        yield Cluster(replicas, balancer)


@dataclass
class Watcher:
    """Managers assigned to the recorded employee, signing in and watching through the
    balancer: a new one each time (TOTP enrollment and a first code; then the whole login
    again with the next code: a TOTP step is accepted once per person)."""

    cluster: Cluster
    tenant: Tenant
    employee: str  # the user id

    def __post_init__(self) -> None:
        self.api = Client(self.cluster.balancer.url)

    def sign_in_and_watch(self, recording_id: str, seq: int) -> None:
        operator = Operator(self.cluster.replicas[0])
        manager = make_person(self.cluster.replicas[0], self.tenant, "manager")
        operator.run(admin.assign, tenant=self.tenant.tenant_id, manager=manager.email,
                     employee=self.employee)
        sign_in(self.api, manager)  # password, then TOTP enrollment and its first code
        again = login_again(self.api, manager)  # password, then the next TOTP code
        assert again.status == 200, again.body
        manager.access_token = again.body["access_token"]
        self.watch(manager, recording_id, seq)

    def watch(self, manager: Person, recording_id: str, seq: int) -> None:
        path = f"/api/v1/recordings/{recording_id}/segments/{seq}/view"
        minted = self.api.call("POST", path, token=manager.access_token)
        assert minted.status == 200, minted.body
        fetched = urllib3.PoolManager(retries=False).request("GET", minted.body["url"])
        assert fetched.status == 200, fetched.data[:300]
        assert decoded_frames(fetched.data) >= 1


def served_device_calls(replica: BrokerProcess) -> int:
    """Device calls (heartbeats, grants, completions) this run of the replica answered."""
    pattern = re.compile(r'"path": "/api/v1/(devices/heartbeat|recordings/[^"]*)", "status": 2')
    return len(pattern.findall(replica.log_text()))


def test_the_agent_records_through_the_balancer_while_a_replica_is_killed_and_restarted(
    cluster: Cluster, s3_endpoint: S3Endpoint, xvfb: XDisplay, tmp_path: Path
) -> None:
    first = cluster.replicas[0]
    tenant = make_tenant(first, s3_endpoint)
    employee = make_user(first, tenant)
    enrolled = subprocess.run(
        [AGENT, "enroll", "--broker", cluster.balancer.url,
         "--code", enrollment_code(first, tenant, employee)],
        env=agent_env(tmp_path, ""), capture_output=True, text=True, timeout=60, check=False,
    )
    assert enrolled.returncode == 0, enrolled.stderr
    victim, victim_name = cluster.replicas[1], cluster.names[1]
    watcher = Watcher(cluster, tenant, employee)

    with running(tmp_path, xvfb.display, *SHORT) as agent:
        rid = agent.recording_id
        agent.wait_uploaded(2)
        watcher.sign_in_and_watch(rid, 0)  # every replica up

        assert victim.kill() == -signal.SIGKILL  # no draining: as when a machine dies
        # at once, before the balancer's check has noticed: its connections are refused and
        # tried again on another replica
        watcher.sign_in_and_watch(rid, 1)
        cluster.balancer.wait_state(victim_name, "DOWN")
        done = len(uploaded_seqs(agent.lines))
        agent.wait_uploaded(done + 2)  # recording goes on with the replica down

        victim.start()  # the same port, the same database
        cluster.balancer.wait_state(victim_name, "UP")
        until("the restarted replica serving the agent", lambda: served_device_calls(victim) > 0)
        watcher.sign_in_and_watch(rid, 2)
        done = len(uploaded_seqs(agent.lines))
        agent.wait_uploaded(done + 2)  # and after it is back
        served = [served_device_calls(r) for r in cluster.replicas]

        # another replica is stopped the orderly way: it drains, the balancer moves away
        leaving, leaving_name = cluster.replicas[2], cluster.names[2]
        os.kill(leaving.pid, signal.SIGTERM)
        cluster.balancer.wait_state(leaving_name, "DOWN")
        until("the drained replica's exit", lambda: not pid_alive(leaving.pid))
        assert leaving.stop() == 0
        watcher.sign_in_and_watch(rid, 3)
        done = len(uploaded_seqs(agent.lines))
        agent.wait_uploaded(done + 2)
        agent.signal(signal.SIGTERM)
        assert agent.finish() == 0, agent.stderr

    seqs = uploaded_seqs(agent.lines)
    assert seqs == list(range(len(seqs))), agent.stderr  # in order, none twice, none missing
    assert len(seqs) >= 6
    credential = _credential(tmp_path)
    info = Api(cluster.balancer.url).call(
        "GET", f"/api/v1/recordings/{rid}", token=credential["access_token"]
    ).body
    assert info["state"] == "finished", info
    assert [s["seq"] for s in info["segments"]] == seqs, info
    assert {s["state"] for s in info["segments"]} == {"verified"}, info
    objects = _objects(s3_endpoint, tenant, rid)
    # the recording's manifest is the bucket's own record, written by the outbox after the
    # finish, so it may or may not be there yet: it is the only object besides the segments
    manifest = [key for key in objects if key.rsplit("/", 1)[-1] == MANIFEST_NAME]
    assert len(manifest) <= 1, sorted(objects)
    segment_keys = sorted(key for key in objects if key not in manifest)
    assert segment_keys == sorted(s["key"] for s in info["segments"])  # each once
    for segment in info["segments"]:
        assert len(objects[segment["key"]]) == segment["size"]
        assert decoded_frames(objects[segment["key"]]) >= 1
    report = first.admin("verify-recording", "--tenant", tenant.name, rid)
    assert report["ok"] is True, report
    assert report["verified"] == len(seqs), report
    # every replica took part, the restarted one in both of its lives
    assert all(count > 0 for count in served), served


def test_the_readme_shows_the_balancer_configuration_the_test_uses() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Deployment: replicas behind a load balancer"):]
    shown = section[section.index("```haproxy\n") + len("```haproxy\n"):]
    shown = shown[:shown.index("```")]
    servers = re.findall(r"^    server (\S+) (\S+) check$", shown, re.MULTILINE)
    bind = re.search(r"^    bind (.+)$", shown, re.MULTILINE)
    socket = re.search(r"^    stats socket (\S+) ", shown, re.MULTILINE)
    assert servers, shown
    assert bind, shown
    assert socket, shown
    assert shown == config(bind[1], servers, socket[1])


def _credential(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "device.json").read_text())
    return data


def _objects(s3: S3Endpoint, tenant: Tenant, recording_id: str) -> dict[str, bytes]:
    client = s3.client()
    listing = client.list_objects_v2(Bucket=tenant.bucket, Prefix=tenant.prefix)
    return {
        item["Key"]: client.get_object(Bucket=tenant.bucket, Key=item["Key"])["Body"].read()
        for item in listing.get("Contents", []) if f"/{recording_id}/" in item["Key"]
    }
