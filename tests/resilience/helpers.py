"""The real agent program against the real broker, moto's S3 API behind a cuttable relay, and
the suite's Xvfb display. Nothing of the project is faked; the network cut is a real TCP relay
(tests/support/cuttable.py) that resets connections."""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av

from broker import admin
from shared.bucket.keys import is_segment
from tests.support import agentlog
from tests.support.api import Api, Operator, Tenant, enrollment_code, make_user
from tests.support.broker import BrokerProcess
from tests.support.cuttable import CuttableRelay, cuttable_relay
from tests.support.s3 import S3Endpoint

AGENT = str(Path(sys.executable).with_name("bucketreel-agent"))
UPLOADED = re.compile(r"^segment (\d+) uploaded: ")


@dataclass(frozen=True)
class Site:
    """A tenant whose bucket is reached (by the agent and the broker) through `relay`."""

    broker: BrokerProcess
    s3: S3Endpoint
    tenant: Tenant
    relay: CuttableRelay
    home: Path

    @property
    def spool(self) -> Path:
        return self.home / "spool"

    def credential(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.home / "device.json").read_text())
        return data

    def device(self) -> dict[str, Any]:
        """This agent's device as the admin's device list shows it (heartbeat included)."""
        device_id = self.credential()["device_id"]
        listed = self.broker.admin("devices", "--tenant", self.tenant.name)["devices"]
        (device,) = [d for d in listed if d["device_id"] == device_id]
        found: dict[str, Any] = device
        return found

    def recording(self, recording_id: str) -> dict[str, Any]:
        reply = Api(self.broker.url).call(
            "GET", f"/api/v1/recordings/{recording_id}", token=self.credential()["access_token"]
        )
        assert reply.status == 200, reply.body
        body: dict[str, Any] = reply.body
        return body

    def objects(self, recording_id: str) -> dict[str, bytes]:
        """Every segment object of the recording in the bucket (read directly, as a test may;
        the manifest the broker writes beside them is not a segment)."""
        s3 = self.s3.client()
        found: dict[str, bytes] = {}
        listing = s3.list_objects_v2(Bucket=self.tenant.bucket, Prefix=self.tenant.prefix)
        for item in listing.get("Contents", []):
            if f"/{recording_id}/" in item["Key"] and is_segment(item["Key"]):
                body = s3.get_object(Bucket=self.tenant.bucket, Key=item["Key"])["Body"].read()
                found[item["Key"]] = body
        return found


@contextmanager
def site(broker: BrokerProcess, s3: S3Endpoint, home: Path) -> Iterator[Site]:
    """A tenant with its storage endpoint behind a cuttable relay, and an enrolled agent."""
    parts = urlsplit(s3.url)
    assert parts.hostname is not None
    assert parts.port is not None
    with cuttable_relay(parts.hostname, parts.port) as relay:
        operator = Operator(broker)
        name = f"tenant-{secrets.token_hex(4)}"
        tenant_id = operator.run(admin.create_tenant, name=name)["tenant_id"]
        bucket = s3.create_bucket()
        operator.run(
            admin.set_storage, tenant=tenant_id, bucket=bucket, region=s3.region,
            endpoint_url=relay.url, prefix="rec", access_key_id=s3.access_key_id,
            secret_access_key=s3.secret_access_key,
            accept_risk=True,  # moto without IAM: the storage self-check finds every right
        )
        tenant = Tenant(tenant_id, name, bucket, "rec")
        code = enrollment_code(broker, tenant, make_user(broker, tenant))
        enrolled = subprocess.run(
            [AGENT, "enroll", "--broker", broker.url, "--code", code],
            env=agent_env(home, ""), capture_output=True, text=True, timeout=60, check=False,
        )
        assert enrolled.returncode == 0, enrolled.stderr
        yield Site(broker, s3, tenant, relay, home)


def agent_env(home: Path, display: str) -> dict[str, str]:
    return {**os.environ, "BUCKETREEL_AGENT_HOME": str(home), "DISPLAY": display}


class Agent:
    """`bucketreel-agent run` as a process; its stderr (JSON lines: not a terminal) is
    collected entry by entry: `entries` as logged, `lines` their messages."""

    def __init__(self, home: Path, display: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [AGENT, "run", *args], env=agent_env(home, display), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.lines: list[str] = []
        self.raw: list[str] = []  # stderr as written
        self.entries: list[dict[str, Any]] = []
        self.unstructured: list[str] = []  # lines that are not log entries (a defect)
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            text = line.rstrip("\n")
            with self._changed:
                self.raw.append(text)
                try:
                    logged = agentlog.entry(text)
                except AssertionError:
                    self.unstructured.append(text)
                    self.lines.append(text)
                else:
                    self.entries.append(logged)
                    self.lines.append(str(logged["message"]))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.raw)

    def wait_for(self, what: str, test: Callable[[list[str]], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not test(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"agent: no {what} within {timeout} s:\n{self.stderr}")
                self._changed.wait(min(left, 0.2))

    def wait_uploaded(self, count: int, timeout: float = 60) -> None:
        self.wait_for(f"{count} uploaded segment(s)",
                      lambda lines: len(uploaded_seqs(lines)) >= count, timeout)

    @property
    def recording_id(self) -> str:
        self.wait_for("recording start", lambda ls: any(x.startswith("recording ") for x in ls))
        return next(x.split()[1] for x in self.lines if x.startswith("recording "))

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        assert self.unstructured == [], f"agent stderr outside the JSON log:\n{self.stderr}"
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextmanager
def running(home: Path, display: str, *args: str) -> Iterator[Agent]:
    agent = Agent(home, display, *args)
    try:
        yield agent
    finally:
        agent.close()


def uploaded_seqs(lines: list[str]) -> list[int]:
    return [int(m.group(1)) for line in lines if (m := UPLOADED.match(line))]


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def assert_verified_in_order(
    site: Site, recording_id: str, seqs: list[int], *, pending: list[int] | None = None
) -> None:
    """Exactly `seqs` are in the bucket and verified by the broker, each once, each playable.

    `pending`: segments the broker granted but never got (declared, not stored, not verified).
    """
    info = site.recording(recording_id)
    listed = info["segments"]
    assert sorted(s["seq"] for s in listed) == sorted(seqs + (pending or [])), info
    segments = [s for s in listed if s["seq"] not in (pending or [])]
    assert [s["seq"] for s in segments] == seqs, info
    assert {s["state"] for s in segments} <= {"verified"}, info
    assert all(s["state"] != "verified" for s in listed if s["seq"] in (pending or []))
    objects = site.objects(recording_id)
    assert sorted(objects) == sorted(s["key"] for s in segments)
    for segment in segments:
        data = objects[segment["key"]]
        assert len(data) == segment["size"]
        assert decoded_frames(data) >= 1
