"""The heartbeat: the agent's status sent to the broker every minute, and at start and stop.

It reads what `StatusFile` holds (state, recording, spool, last upload, errors, whether the
screen capture delivers pictures) and posts it, with the agent's version, as a
`shared.wire.Heartbeat`. One try per beat, never blocking the recording: a lost beat is
logged and the next one goes out on time.
The broker marks a device silent after three missed intervals.

The reply carries the tenant's recording policy (fps, segment length, idle timeout); the
sender keeps the latest one (`policy`) for the recorder, which applies it from its next
segment. A lost beat keeps the policy last received.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from agent.broker_client import BrokerClient
from agent.cpu import STAGES
from agent.errors import AgentError
from agent.status import StatusFile
from shared import version
from shared.wire import MAX_VERSION, Heartbeat, WireError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60.0


def heartbeat_of(data: dict[str, Any], interval: float) -> Heartbeat:
    """The wire heartbeat for a status snapshot (WireError when the snapshot does not fit the
    contract's limits)."""
    last_upload = data.get("last_upload")
    last_error = data.get("last_error")
    settings = data.get("settings")
    capture = data.get("capture")
    return Heartbeat.from_json({
        "state": str(data.get("state") or "unknown")[:20],
        "recording_id": data.get("recording_id"),
        "spool_bytes": int(data.get("spool_bytes") or 0),
        "spool_segments": int(data.get("spool_segments") or 0),
        "last_upload": dict(last_upload) if isinstance(last_upload, dict) else None,
        "errors": int(data.get("errors") or 0),
        "last_error": (
            {"at": last_error.get("at"), "message": str(last_error.get("message", ""))[:300]}
            if isinstance(last_error, dict)
            else None
        ),
        "interval": max(1, round(interval)),
        "settings": dict(settings) if isinstance(settings, dict) else None,
        "capture": dict(capture) if isinstance(capture, dict) else None,
        "agent_version": version()[:MAX_VERSION],
    })


class HeartbeatSender:
    """Sends a heartbeat now, then every `interval` seconds until `stop()` (which sends one
    last time)."""

    def __init__(self, broker: BrokerClient, status: StatusFile, interval: float) -> None:
        self._broker = broker
        self._status = status
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="bucketreel-heartbeat", daemon=True
        )
        self.sent = 0
        self.failed = 0
        self._policy: dict[str, Any] = {}
        self._policy_lock = threading.Lock()

    @property
    def policy(self) -> dict[str, Any]:
        """The policy of the latest reply: the keys the broker set ({} when none)."""
        with self._policy_lock:
            return dict(self._policy)

    def start(self) -> None:
        """Send the first beat now (so its reply's policy holds from the first segment),
        then one every `interval` seconds from a thread of its own."""
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and send the final status (the caller has set its state)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.beat()

    def beat(self) -> bool:
        with STAGES.stage("heartbeat"):
            return self._beat()

    def _beat(self) -> bool:
        try:
            policy = self._broker.heartbeat(heartbeat_of(self._status.snapshot(), self.interval))
        except (AgentError, WireError, ValueError) as exc:
            self.failed += 1
            log.warning("heartbeat not delivered: %s", exc)
            return False
        with self._policy_lock:
            self._policy = policy
        self.sent += 1
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
