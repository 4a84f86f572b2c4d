"""Enrolling this workstation as a device with a one-time code an admin issued."""

from __future__ import annotations

import logging
import socket

from agent.broker_client import BrokerClient
from agent.credentials import CredentialStore, DeviceCredential, ensure_private_dir
from agent.errors import BrokerError, EnrollmentError
from agent.retry import RetryPolicy
from shared.wire import MAX_CODE, MAX_DEVICE_NAME

log = logging.getLogger(__name__)

ENROLL_POLICY = RetryPolicy(attempts=3, base_delay=0.5, max_delay=2.0, max_retry_after=30.0)


def default_device_name() -> str:
    """The host name, trimmed to what the broker accepts."""
    return (socket.gethostname() or "workstation")[:MAX_DEVICE_NAME]


def enroll(
    broker_url: str,
    code: str,
    store: CredentialStore,
    *,
    name: str | None = None,
    force: bool = False,
    client: BrokerClient | None = None,
) -> DeviceCredential:
    """Trade `code` for a device credential and save it in `store`.

    Refuses to replace an existing credential unless `force` (the old device would stay
    registered at the broker until an admin revokes it).
    """
    code = code.strip()
    if not 1 <= len(code) <= MAX_CODE:
        raise EnrollmentError(f"the enrollment code must be 1 to {MAX_CODE} characters long")
    name = (name if name is not None else default_device_name()).strip()
    if not 1 <= len(name) <= MAX_DEVICE_NAME:
        raise EnrollmentError(f"the device name must be 1 to {MAX_DEVICE_NAME} characters long")
    if store.exists() and not force:
        raise EnrollmentError(
            f"this workstation is already enrolled ({store.path}); "
            "use --force to enroll it again"
        )
    # interactive: a few quick tries, then tell the person at the terminal
    client = client or BrokerClient(broker_url, policy=ENROLL_POLICY)
    # make sure the credential can be written before the one-time code is spent
    ensure_private_dir(store.path.parent)
    try:
        pair = client.enroll(code, name)
    except BrokerError as exc:
        raise EnrollmentError(f"enrollment failed: {exc}") from exc
    credential = DeviceCredential.from_token_pair(client.base_url, pair)
    store.save(credential)
    log.info("enrolled as device %s", credential.device_id)
    return credential
