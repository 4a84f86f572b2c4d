"""The admin's Storage page: the bucket, the access state, the last self-check in plain words,
the IAM policies to install, and the forms that hand the broker new keys (the rotation) or a
role and run the self-check.

The forms call the same `StorageAccess` methods as `PUT /api/v1/admin/storage` and `POST
/api/v1/admin/storage/check`, with the body decoded by the same model (`StorageRequest`). The
secret access key is never put on a page: its field is empty on every render, and a refused
save shows the other fields as they were typed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aiohttp import web

from broker.errors import BrokerError, InvalidInput
from broker.identity import Principal
from broker.storage.service import StorageRisk
from broker.web.appkeys import SERVICES
from broker.web.pages.forms import read_form
from broker.web.pages.html import page, top_bar, when
from broker.web.pages.signin import see_other
from broker.web.templating import zone_name
from shared.api import StorageRequest
from shared.model import WireError

PATH = "/admin/storage"
KEYS, ROLE = "keys", "role"
# What the form shows again after a refusal: everything typed but the secret.
KEPT = ("bucket", "region", "prefix", "endpoint_url", "mode", "access_key_id", "role_arn")
POLICY_QUERY = ("bucket", "prefix", "principal_arn")

# Each self-check finding (`broker.storage.selfcheck.FINDINGS`) for a person: what it means,
# and what to change in the customer's AWS account.
FINDING_WORDS: dict[str, tuple[str, str]] = {
    "cannot_write": (
        "The broker could not create an object in the bucket with these credentials, so "
        "recordings cannot be uploaded.",
        "Check that the access key is active (or that the role trusts the broker with this "
        "tenant's external ID), that bucket, region and endpoint are right, and add the "
        "identity policy below to the broker's IAM user or role.",
    ),
    "can_list": (
        "The broker's credentials can list what the bucket holds. The broker must only write "
        "new recordings and read ones it is told about.",
        "Remove s3:ListBucket (and s3:List*, s3:* or any wider grant) from the policies of the "
        "broker's IAM user or role, and add the bucket policy below, which denies listing.",
    ),
    "can_delete": (
        "The broker's credentials can delete objects: whoever held them could erase "
        "recordings.",
        "Remove s3:DeleteObject and s3:DeleteObjectVersion (and s3:*) from the policies of the "
        "broker's IAM user or role; the bucket policy below denies every delete.",
    ),
    "can_change_acl": (
        "The broker's credentials can change an object's access list: they could make a "
        "recording public.",
        "Remove s3:PutObjectAcl (and s3:*) from the policies of the broker's IAM user or role, "
        "or turn ACLs off on the bucket (Object Ownership: bucket owner enforced).",
    ),
    "missing_keys_answer_404": (
        "Asking for an object that does not exist answered \"not found\" instead of \"access "
        "denied\": the credentials hold s3:ListBucket, so they can find out which objects "
        "exist.",
        "Remove s3:ListBucket from the policies of the broker's IAM user or role; the bucket "
        "policy below denies it. (moto, the test double, answers \"not found\" to any "
        "principal; AWS S3 does not.)",
    ),
}
PROBE_WORDS = {
    "write": "create an object",
    "list": "list the bucket",
    "delete": "delete an object",
    "acl": "change an object's ACL",
    "head": "ask about a missing object",
}
POLICY_TITLES = (
    ("identity_policy", "Identity policy",
     "Attach to the broker's IAM user (static keys) or role: it may write and read objects "
     "under the prefix, nothing else."),
    ("bucket_policy", "Bucket policy",
     "Put on the bucket: it denies the broker's principal every delete, list, ACL and "
     "configuration change, overwrites, plain HTTP and old signatures, whatever else it is "
     "granted later."),
    ("trust_policy", "Trust policy (role option)",
     "The role's trust policy: only the broker may assume the role, and only with this "
     "tenant's external ID."),
    ("vault_policy", "Vault policy (your own read access)",
     "For your own IAM user that runs bucketreel-vault, never the broker's: it may list and "
     "read under the prefix, nothing else, so you can list, verify and export recordings "
     "without the broker. Retention (a lifecycle rule, Object Lock): the operator's "
     "iam-policy --retention-days N prints both."),
)


def _time(value: str | None) -> str:
    return f"{when(datetime.fromisoformat(value))} ({zone_name()})" if value else ""


def plain(finding: dict[str, Any]) -> dict[str, str]:
    meaning, fix = FINDING_WORDS.get(finding["name"], (finding["message"], ""))
    return {"name": finding["name"], "meaning": meaning, "fix": fix,
            "outcome": finding["outcome"]}


def _check(last: dict[str, Any] | None) -> dict[str, Any] | None:
    if last is None:
        return None
    return {
        "at": _time(last["checked_at"]),
        "can_write": last["can_write"],
        "findings": [plain(f) for f in last["findings"]],
        "probes": [
            {**p, "words": PROBE_WORDS.get(p["name"], p["operation"])} for p in last["probes"]
        ],
    }


def _form_of(status: dict[str, Any]) -> dict[str, str]:
    """The form as the saved storage fills it (never the secret)."""
    return {
        "bucket": status.get("bucket") or "",
        "region": status.get("region") or "",
        "prefix": status.get("prefix") or "",
        "endpoint_url": status.get("endpoint_url") or "",
        "mode": status.get("auth_mode") or KEYS,
        "access_key_id": status.get("access_key_id") or "",
        "role_arn": status.get("role_arn") or "",
    }


def _optional(form: dict[str, str], name: str) -> str | None:
    return form.get(name, "").strip() or None


def request_of(form: dict[str, str]) -> StorageRequest:
    """The form as the API's body (400 naming the field, as the API's binder says it)."""
    mode = form.get("mode", "")
    if mode not in (KEYS, ROLE):
        raise InvalidInput("mode: choose static keys or a role")
    body: dict[str, Any] = {
        "bucket": form.get("bucket", "").strip(),
        "region": form.get("region", "").strip(),
        "endpoint_url": _optional(form, "endpoint_url"),
        "prefix": form.get("prefix", "").strip(),
        "accept_risk": form.get("accept_risk") == "1",
    }
    if mode == KEYS:
        body["access_key_id"] = _optional(form, "access_key_id")
        body["secret_access_key"] = form.get("secret_access_key") or None
    else:
        body["role_arn"] = _optional(form, "role_arn")
    try:
        return StorageRequest.from_json(body)
    except WireError as exc:
        raise InvalidInput(str(exc)) from None


async def _policies(
    request: web.Request, principal: Principal, status: dict[str, Any],
    form: dict[str, str] | None,
) -> tuple[list[dict[str, str]], str]:
    """The three documents as text, for the page's query, else the saved storage, else the
    bucket the refused form named; or why not."""
    query = {name: request.query.get(name) or None for name in POLICY_QUERY}
    if not status["configured"] and query["bucket"] is None:
        if not (form and form.get("bucket")):
            return [], ""
        query.update(bucket=form["bucket"].strip(), prefix=form.get("prefix", "").strip())
    try:
        documents = await request.app[SERVICES].storage.policies(principal.tenant_id, **query)
    except InvalidInput as exc:
        return [], exc.message
    shown = [
        {"id": key.replace("_", "-"), "title": title, "help": help_text,
         "text": json.dumps(documents[key], indent=2)}
        for key, title, help_text in POLICY_TITLES
    ]
    words = {"ACCOUNT_ID": "ACCOUNT_ID: your AWS account",
             "BROKER_ACCOUNT_ID": "BROKER_ACCOUNT_ID: the broker operator's identity, which "
             "they tell you"}
    if documents["placeholders"]:
        shown[0]["replace"] = "; ".join(words.get(p, p) for p in documents["placeholders"])
    return shown, ""


async def _render(
    request: web.Request,
    principal: Principal,
    *,
    form: dict[str, str] | None = None,
    error: str = "",
    refused: list[dict[str, str]] | None = None,
    acceptable: bool = False,
    status: int = 200,
) -> web.Response:
    storage = request.app[SERVICES].storage
    state = await storage.status(principal.tenant_id)
    policies, policy_error = await _policies(request, principal, state, form)
    notice = {"saved": "Saved: the self-check passed and the broker signs with the new "
                       "credentials from now on.",
              "checked": "The self-check ran."}.get(request.query.get("done", ""), "")
    return page(
        request, "admin_storage.html", title="Storage", top=await top_bar(request, principal),
        scripts=["admin-storage.js"], status=status,
        csrf=request.app[SERVICES].sessions.csrf_token(principal.session_id),
        storage=state, revoked_since=_time(state["state_changed_at"]),
        check=_check(state["last_check"]), form=form or _form_of(state), error=error,
        refused=refused or [], acceptable=acceptable, notice=notice,
        policies=policies, policy_error=policy_error,
        query={name: request.query.get(name, "") for name in POLICY_QUERY},
    )


async def storage_page(request: web.Request, principal: Principal) -> web.Response:
    return await _render(request, principal)


async def save_storage(request: web.Request, principal: Principal) -> web.Response:
    """The form → the self-check → saved (303 back to the page), or the page again with why,
    the typed fields kept but the secret, nothing saved."""
    form = await read_form(request)
    kept = {name: form.get(name, "")[:2048] for name in KEPT}
    try:
        body = request_of(form)
        # the same call as `PUT /api/v1/admin/storage`: the body's fields, by name
        await request.app[SERVICES].storage.save(
            principal.tenant_id, actor=f"user:{principal.user_id}", **body.to_json()
        )
    except StorageRisk as exc:
        return await _render(
            request, principal, form=kept, status=exc.status,
            error="The self-check failed: nothing was saved.",
            refused=[plain({"name": f.name, "message": f.message, "outcome": f.outcome})
                     for f in exc.findings],
            acceptable=exc.acceptable,
        )
    except BrokerError as exc:
        return await _render(
            request, principal, form=kept, status=exc.status,
            error=f"Nothing was saved: {exc.message}",
        )
    return see_other(f"{PATH}?done=saved")


async def check_storage(request: web.Request, principal: Principal) -> web.Response:
    """Run the self-check on the saved storage, then back to the page (which shows it)."""
    try:
        await request.app[SERVICES].storage.check(
            principal.tenant_id, actor=f"user:{principal.user_id}"
        )
    except BrokerError as exc:
        return await _render(
            request, principal, status=exc.status,
            error=f"The self-check did not run: {exc.message}",
        )
    return see_other(f"{PATH}?done=checked")
