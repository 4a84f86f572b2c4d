"""Enrolling this workstation as a device with a one-time code an admin issued."""

from __future__ import annotations

import logging
import socket

from agent.broker_client import BrokerClient
from agent.credentials import CredentialStore, DeviceCredential, ensure_private_dir
from agent.custody import DeviceKey, key_path
from agent.errors import BrokerError, EnrollmentError
from agent.retry import RetryPolicy
from shared.wire import MAX_CODE, MAX_DEVICE_NAME, TokenPair

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
    name = prepare(store, name=name, force=force)
    # interactive: a few quick tries, then tell the person at the terminal
    client = client or BrokerClient(broker_url, policy=ENROLL_POLICY)
    # the chain-of-custody key: made here, its public half registered with the broker
    key = DeviceKey.generate()
    try:
        pair = client.enroll(code, name, key.public_key)
    except BrokerError as exc:
        raise EnrollmentError(f"enrollment failed: {exc}") from exc
    return keep(client, pair, key, store)


def prepare(store: CredentialStore, *, name: str | None, force: bool) -> str:
    """Checks made before anything is spent at the broker; returns the device name."""
    name = (name if name is not None else default_device_name()).strip()
    if not 1 <= len(name) <= MAX_DEVICE_NAME:
        raise EnrollmentError(f"the device name must be 1 to {MAX_DEVICE_NAME} characters long")
    if store.exists() and not force:
        raise EnrollmentError(
            f"this workstation is already enrolled ({store.path}); "
            "use --force to enroll it again"
        )
    # make sure the credential can be written before a code or a session is spent
    ensure_private_dir(store.path.parent)
    return name


def keep(
    client: BrokerClient, pair: TokenPair, key: DeviceKey, store: CredentialStore
) -> DeviceCredential:
    """Save the new device's key and credential (key first: a credential implies its key)."""
    credential = DeviceCredential.from_token_pair(client.base_url, pair)
    key.save(key_path(store.path))
    store.save(credential)
    log.info("enrolled as device %s", credential.device_id)
    return credential
