"""What a failed login leaves in the audit log: never the string typed as the email.

People type their password into the email field. The audit entry names a known user by id
only, an unknown account by a short keyed digest, and neither the audit log nor the broker's
log holds the typed string.
"""

from __future__ import annotations

import json
import re
import secrets

from tests.identity.people import Client, audit_entries, login, make_person
from tests.support.api import Tenant
from tests.support.broker import BrokerProcess


def _everything(entry: object) -> str:
    return json.dumps(
        {k: getattr(entry, k) for k in ("actor", "action", "target", "details")}, default=str
    )


def test_a_password_typed_as_the_email_leaves_no_trace(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    typed = f"Tr0ub4dor&3-{secrets.token_hex(6)}"  # a password, in the email field
    reply = client.call(
        "POST", "/api/v1/auth/login",
        {"tenant": tenant.name, "email": typed, "password": "also wrong, whatever"},
    )
    assert reply.status == 401, reply.body

    entries = [
        e for e in audit_entries(broker, tenant.tenant_id) if e.action == "auth.login_failed"
    ]
    assert entries, "the failure is still audited"
    assert not any(typed.lower() in _everything(e).lower() for e in entries)
    unknown = [e for e in entries if e.target == "unknown-user"]
    assert unknown
    account = unknown[-1].details["account"]
    assert re.fullmatch(r"acct_[0-9a-f]{16}", account), account
    assert typed.lower() not in broker.log_tail(5000).lower()


def test_a_known_user_is_recorded_by_id_only(
    client: Client, broker: BrokerProcess, tenant: Tenant
) -> None:
    person = make_person(broker, tenant)
    assert login(client, person, "not the password!").status == 401

    mine = [
        e for e in audit_entries(broker, tenant.tenant_id)
        if e.action == "auth.login_failed" and e.target == person.user_id
    ]
    assert mine
    assert mine[-1].actor == f"user:{person.user_id}"
    assert person.email not in _everything(mine[-1])
    assert mine[-1].details == {"step": "password"}
