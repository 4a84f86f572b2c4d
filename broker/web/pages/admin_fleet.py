"""The admin's fleet pages: devices, enrollment codes, the recording policy.

Each page calls the same services as the `/api/v1/admin/...` routes. A form that fails comes
back with the message and what was typed (status 4xx); a code is shown once, on the page
that created it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from broker.devices import costs
from broker.devices.codes import enroll_command
from broker.errors import BrokerError, InvalidInput
from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import public_url
from broker.web.pages.forms import read_form
from broker.web.pages.html import page, top_bar
from broker.web.pages.signin import see_other
from shared.api import CODE_TTL_MAX, CODE_TTL_MIN, MAX_CODE_USES, CreateEnrollmentCode
from shared.model import WireError
from shared.wire import POLICY_KEYS, POLICY_RANGES, QUALITY_LEVELS, PolicyPatch

PAUSES = {"idle": "idle", "locked": "screen locked", "capture_blocked": "capture blocked"}
# The fields' names on the pages, for a refusal's message.
LABELS = {
    "user_id": "Person", "max_uses": "Devices (uses)", "hours": "Valid for (hours)",
    "expires_in": "Valid for", "label": "Label", "fps": "Frames per second",
    "segment_seconds": "Segment length (seconds)", "idle_seconds": "Idle timeout (seconds)",
    "quality": "Quality",
}
# The quality levels as the policy form offers them (shared.wire.QualityLevel).
QUALITY_CHOICES = {
    "high": "High: H.264, crisper text, larger files",
    "standard": "Standard: H.264, plays in every browser (the agents' default)",
    "compact": "Compact: H.264, smaller files, softer text",
    "av1": "AV1 (SVT-AV1): no smaller than standard on office screens, several times the CPU "
    "on the workstation; plays in Chrome, Edge and Firefox, in Safari only on devices with AV1 "
    "hardware",
}


def _field_error(exc: WireError) -> str:
    return f"{LABELS.get(exc.field, exc.field)}: {exc.message}"


def _at(value: str | None) -> datetime | None:
    """A service's timestamp as the templates' `moment` takes it (the viewer's zone)."""
    return datetime.fromisoformat(value) if value else None


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


# --- Devices


def _device_row(d: dict[str, Any]) -> dict[str, Any]:
    upload = d["last_upload"]
    state = d["state"]
    if state == "paused":
        state = f"paused ({PAUSES.get(d['paused_reason'] or '', d['paused_reason'])})"
    return {
        "id": d["device_id"], "name": d["name"], "email": d["email"], "state": state,
        "silent": d["state"] == "silent", "revoked": d["revoked_at"] is not None,
        "version": d["agent_version"] or "—",
        "seen": _at(d["last_seen_at"]),
        "spool": (f"{d['spool_segments']} segments, {_size(d['spool_bytes'])}"
                  if d["spool_segments"] else "none"),
        "upload": upload and {
            "at": _at(upload["at"]), "recording": upload["recording_id"],
            "seq": upload["seq"], "size": _size(upload["size"]),
        },
        "gaps": [
            {"reason": PAUSES.get(g["reason"], g["reason"].replace("_", " ")),
             "at": _at(g["reported_at"]), "segments": g["segments"]}
            for g in d["recent_gaps"]
        ],
    }


async def devices_page(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].devices.list_devices(principal.tenant_id)
    rows = [_device_row(d) for d in listed]
    return page(
        request, "admin_fleet_devices.html", title="Devices", top=await top_bar(request, principal),
        devices=rows, silent=sum(r["silent"] for r in rows),
    )


async def revoke_device(request: web.Request, principal: Principal) -> web.Response:
    await request.app[SERVICES].devices.revoke(
        principal.tenant_id, request.match_info["device_id"], actor=f"user:{principal.user_id}"
    )
    return see_other("/admin/devices")


# --- Enrollment codes


def _code_row(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["code_id"], "email": c["email"], "label": c["label"] or "",
        "uses": c["uses"], "max_uses": c["max_uses"], "created": _at(c["created_at"]),
        "expires": _at(c["expires_at"]), "state": c["state"].replace("_", " "),
        "active": c["state"] == "active",
    }


async def _enrollment(
    request: web.Request,
    principal: Principal,
    *,
    form: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> web.Response:
    services = request.app[SERVICES]
    people = await services.viewing.employees(principal)
    listed = await services.devices.list_codes(principal.tenant_id)
    hours = services.settings.enrollment_code_ttl // 3600
    typed = form or {"user_id": "", "max_uses": "1", "hours": str(max(1, hours)), "label": ""}
    return page(
        request, "admin_fleet_enrollment.html", title="Enrollment",
        top=await top_bar(request, principal), people=people, codes=[_code_row(c) for c in listed],
        form=typed, created=created, error=error, status=status,
        max_uses=MAX_CODE_USES, max_hours=CODE_TTL_MAX // 3600,
    )


async def enrollment_page(request: web.Request, principal: Principal) -> web.Response:
    return await _enrollment(request, principal)


def _whole(form: dict[str, str], name: str) -> int:
    raw = form.get(name, "").strip()
    if not raw.isdigit() or len(raw) > 9:
        raise InvalidInput(f"{LABELS[name]}: must be a whole number")
    return int(raw)


def _code_request(form: dict[str, str]) -> CreateEnrollmentCode:
    if not form.get("user_id"):
        raise InvalidInput("Person: choose whose workstations the code enrolls")
    hours = _whole(form, "hours")
    if not CODE_TTL_MIN <= hours * 3600 <= CODE_TTL_MAX:
        raise InvalidInput(f"{LABELS['hours']}: must be 1 to {CODE_TTL_MAX // 3600}")
    label = form.get("label", "").strip()
    return CreateEnrollmentCode.from_json({
        "user_id": form.get("user_id", ""),
        "max_uses": _whole(form, "max_uses"),
        "expires_in": hours * 3600,
        "label": label or None,
    })


async def create_code(request: web.Request, principal: Principal) -> web.Response:
    form = await read_form(request)
    typed = {k: form.get(k, "")[:300] for k in ("user_id", "max_uses", "hours", "label")}
    try:
        wanted = _code_request(form)
        issued = await request.app[SERVICES].devices.issue_enrollment_code(
            principal.tenant_id, wanted.user_id, actor=f"user:{principal.user_id}",
            max_uses=wanted.max_uses, ttl=wanted.expires_in, label=wanted.label,
        )
    except WireError as exc:
        return await _enrollment(
            request, principal, form=typed, error=_field_error(exc), status=400
        )
    except BrokerError as exc:
        return await _enrollment(
            request, principal, form=typed, error=exc.message, status=exc.status
        )
    created = {
        **_code_row(issued.info), "code": issued.code,
        "command": enroll_command(public_url(request), issued.code),
    }
    return await _enrollment(request, principal, created=created)


async def revoke_code(request: web.Request, principal: Principal) -> web.Response:
    await request.app[SERVICES].devices.revoke_code(
        principal.tenant_id, request.match_info["code_id"], actor=f"user:{principal.user_id}"
    )
    return see_other("/admin/enrollment")


# --- Recording policy

def _policy_values(form: dict[str, str]) -> dict[str, float | int | str | None]:
    """The form's fields as a policy: an empty field clears the key (the agents decide)."""
    values: dict[str, float | int | str | None] = {}
    for key in POLICY_KEYS:
        raw = form.get(key, "").strip()
        if not raw:
            values[key] = None
            continue
        if key not in POLICY_RANGES:  # the quality level: a name, checked by PolicyPatch
            values[key] = raw
            continue
        whole = POLICY_RANGES[key].kind is int
        try:
            values[key] = int(raw) if whole else float(raw)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            raise WireError(key, f"must be {kind}") from None
    return values


async def _policy(
    request: web.Request,
    principal: Principal,
    *,
    form: dict[str, str] | None = None,
    saved: bool = False,
    error: str = "",
    status: int = 200,
) -> web.Response:
    current = await request.app[SERVICES].devices.describe_policy(principal.tenant_id)
    shown = form or {k: _shown(current[k]) for k in POLICY_KEYS}
    cost = costs.estimate(current["fps"], current["segment_seconds"], current["idle_seconds"])
    return page(
        request, "admin_fleet_policy.html", title="Recording policy",
        top=await top_bar(request, principal), form=shown, current=current, cost=cost,
        saved=saved, error=error, status=status, labels=LABELS,
        ranges=POLICY_RANGES, defaults=costs.AGENT_DEFAULTS, basis=costs.BASIS,
        fps_table=[(f, costs.mb_per_hour(f)) for f in costs.FPS_CHOICES],
        workday=costs.WORKDAY_HOURS, updated=_at(current["updated_at"]),
        qualities=[(level, QUALITY_CHOICES[level]) for level in QUALITY_LEVELS],
    )


def _shown(value: float | str | None) -> str:
    """A policy value as its form field shows it."""
    if value is None:
        return ""
    return value if isinstance(value, str) else f"{value:g}"


async def policy_page(request: web.Request, principal: Principal) -> web.Response:
    return await _policy(request, principal)


async def save_policy(request: web.Request, principal: Principal) -> web.Response:
    form = await read_form(request)
    typed = {k: form.get(k, "")[:40] for k in POLICY_KEYS}
    try:
        change = PolicyPatch.from_json(_policy_values(form)).update()
    except WireError as exc:
        return await _policy(request, principal, form=typed, error=_field_error(exc), status=400)
    await request.app[SERVICES].devices.update_policy(
        principal.tenant_id, change, actor=f"user:{principal.user_id}"
    )
    return await _policy(request, principal, saved=True)
