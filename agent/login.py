"""Enrolling this workstation by signing in as the employee (password, then 2FA code).

The person's session is used for one thing, registering this device, and is ended right
after. The password and the code are read from the terminal (not echoed) and are never
logged, stored or passed on the command line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agent.broker_client import BrokerClient
from agent.credentials import CredentialStore, DeviceCredential
from agent.custody import DeviceKey
from agent.enrollment import ENROLL_POLICY, keep, prepare
from agent.errors import BrokerError, EnrollmentError
from shared.api import Session

log = logging.getLogger(__name__)

Ask = Callable[[str], str]  # prompt -> answer, not echoed
Tell = Callable[[str], None]


def enroll_by_login(
    broker_url: str,
    tenant: str,
    email: str,
    store: CredentialStore,
    *,
    ask: Ask,
    tell: Tell,
    name: str | None = None,
    force: bool = False,
    client: BrokerClient | None = None,
) -> DeviceCredential:
    name = prepare(store, name=name, force=force)
    client = client or BrokerClient(broker_url, policy=ENROLL_POLICY)
    try:
        step = client.login(tenant, email, ask(f"password for {email}: "))
        if step.mfa == "enroll":
            tell(
                "Two-factor sign-in is not set up for this account yet. Add this key to your "
                f"authenticator app, then type the code it shows:\n  {step.provisioning_uri}"
            )
        session = client.mfa(step.challenge, ask("authenticator code (or a recovery code): "))
        _show_recovery_codes(session, tell)
        if session.access_token is None:
            raise EnrollmentError("enrollment failed: the broker's reply lacks 'access_token'")
        user_token = session.access_token
        key = DeviceKey.generate()
        try:
            pair = client.register(user_token, name, key.public_key)
        finally:
            _end_session(client, user_token)
    except BrokerError as exc:
        raise EnrollmentError(f"enrollment failed: {exc}") from exc
    return keep(client, pair, key, store)


def _show_recovery_codes(session: Session, tell: Tell) -> None:
    codes = session.recovery_codes
    if codes:
        tell(
            "Your one-time recovery codes (shown once; keep them somewhere safe):\n  "
            + "\n  ".join(str(c) for c in codes)
        )


def _end_session(client: BrokerClient, user_token: str) -> None:
    try:
        client.logout(user_token)
    except BrokerError as exc:  # the session expires by itself within minutes
        log.warning("could not end the sign-in session: %s", exc)
