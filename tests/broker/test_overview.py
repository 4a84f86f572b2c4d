"""What people see now and read about viewing, over HTTP, on SQLite and PostgreSQL: display
names (CLI, API, pages; audited), the start page's states and time recorded today, the audit
log's names, grouped viewings and pages, grouped receipts, and the transparency page; and
that another person's data never shows.

Real broker processes, real uploads to moto, real heartbeats; the broker's own services run
in this process (`in_process`) only to make rows at another instant (a device enrolled an
hour ago, views minutes apart).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from broker import admin as operator
from broker.identity import Principal
from broker.services import Services
from tests.identity.people import Client, Clock, Person, audit_entries, in_process, sign_in
from tests.support.api import (
    PASSWORD,
    Device,
    Operator,
    Reply,
    Tenant,
    enroll,
    make_tenant,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

BEAT = {"spool_bytes": 0, "spool_segments": 0, "errors": 0}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class Scene:
    api: Client
    broker: BrokerProcess
    tenant: Tenant
    admin: Person
    manager: Person
    employee: Person  # assigned to the manager, named "Ann Example"
    other: Person  # another employee, not assigned
    device: Device  # the employee's
    outsider: Person  # an admin of another tenant


def named_person(broker: BrokerProcess, tenant: Tenant, role: str, name: str | None) -> Person:
    email = f"{role}-{secrets.token_hex(5)}@example.test"
    made = Operator(broker).run(
        operator.create_user, tenant=tenant.tenant_id, email=email, role=role,
        password=PASSWORD, name=name,
    )
    return Person(tenant, made["user_id"], email, role)


@pytest.fixture(scope="module")
def scene(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Scene:
    api = Client(broker.url)
    tenant = make_tenant(broker, s3_endpoint)
    admin = sign_in(api, named_person(broker, tenant, "admin", "Ada Admin"))
    manager = sign_in(api, named_person(broker, tenant, "manager", "Max Manager"))
    employee = sign_in(api, named_person(broker, tenant, "employee", "Ann Example"))
    other = sign_in(api, named_person(broker, tenant, "employee", None))
    Operator(broker).run(
        operator.assign, tenant=tenant.tenant_id, manager=manager.email, employee=employee.email
    )
    device = enroll(api, broker, tenant, employee.user_id)
    outside = make_tenant(broker, s3_endpoint)
    outsider = sign_in(api, named_person(broker, outside, "admin", None))
    return Scene(api, broker, tenant, admin, manager, employee, other, device, outsider)


def get(scene: Scene, path: str, who: Person) -> Reply:
    return scene.api.call("GET", path, token=who.access_token)


def ok(reply: Reply) -> Any:
    assert reply.status == 200, (reply.status, reply.body)
    return reply.body


def beat(scene: Scene, device: Device, state: str, **extra: Any) -> None:
    ok(scene.api.call(
        "POST", "/api/v1/devices/heartbeat", {"state": state, **BEAT, **extra},
        token=device.access_token,
    ))


def recorded(scene: Scene, device: Device, seconds: list[float]) -> str:
    """A recording whose verified segments last `seconds` each, back to back, ending now."""
    recording_id = start_recording(scene.api, device)
    start = datetime.now(UTC) - timedelta(seconds=sum(seconds) + 1)
    for seq, length in enumerate(seconds):
        segment = random_segment(2048)
        path = f"/api/v1/recordings/{recording_id}/segments/{seq}"
        declared = segment.declaration(
            started_at=start.isoformat(), duration_ms=int(length * 1000)
        )
        grant = ok(scene.api.call("POST", path + "/upload", declared, token=device.access_token))
        assert put_with_grant(grant, segment.data).status == 200
        ok(scene.api.call("POST", path + "/complete", token=device.access_token))
        start += timedelta(seconds=length)
    return recording_id


def view(scene: Scene, who: Person, recording_id: str, seq: int) -> None:
    ok(scene.api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/view",
        token=who.access_token,
    ))


def listed(overview: dict[str, Any], user_id: str) -> dict[str, Any]:
    return next(p for p in overview["people"] if p["user_id"] == user_id)


# --- Display names


def test_names_are_set_by_the_operator_the_api_and_the_page_and_are_audited(
    scene: Scene,
) -> None:
    people = ok(get(scene, "/api/v1/admin/people", scene.admin))["people"]
    names = {p["user_id"]: p["display_name"] for p in people}
    assert names[scene.employee.user_id] == "Ann Example", "admin create-user --name"
    assert names[scene.other.user_id] is None

    path = f"/api/v1/admin/people/{scene.other.user_id}/name"
    changed = ok(scene.api.call("POST", path, {"name": "  Otto   Other "},
                                token=scene.admin.access_token))
    assert changed["display_name"] == "Otto Other"
    refused = scene.api.call("POST", path, {"name": "a\x07b"}, token=scene.admin.access_token)
    assert refused.status == 400
    by_manager = scene.api.call("POST", path, {"name": "x"}, token=scene.manager.access_token)
    assert by_manager.status == 403

    form = scene.api.call(
        "POST", f"/admin/people/{scene.other.user_id}/name", body=urlencode({"name": ""}).encode(),
        headers=FORM, token=scene.admin.access_token,
    )
    assert form.status == 303
    assert ok(get(scene, f"/api/v1/admin/people/{scene.other.user_id}", scene.admin))[
        "display_name"] is None, "a blank name clears it"
    ok(scene.api.call("POST", path, {"name": "Otto Other"}, token=scene.admin.access_token))

    invited = scene.api.call(
        "POST", "/api/v1/admin/people/invite",
        {"email": f"ivy-{secrets.token_hex(3)}@example.test", "role": "employee",
         "name": "Ivy Invited"}, token=scene.admin.access_token,
    )
    assert invited.status == 201, invited.body
    assert ok(get(scene, f"/api/v1/admin/people/{invited.body['user_id']}", scene.admin))[
        "display_name"] == "Ivy Invited"

    changes = [
        e.details for e in audit_entries(scene.broker, scene.tenant.tenant_id)
        if e.action == "user.name_set" and e.target == scene.other.user_id
    ]
    assert changes == [
        {"from": None, "to": "Otto Other"}, {"from": "Otto Other", "to": None},
        {"from": None, "to": "Otto Other"},
    ]
    page = get(scene, "/admin/people", scene.admin).raw.decode()
    assert '<span class="name">Otto Other</span>' in page
    own = get(scene, "/", scene.employee).raw.decode()
    assert (f'<span class="who" title="{scene.employee.email}">Ann Example (employee)</span>'
            in own), "the top bar names the person, the email on hover"
    nameless = get(scene, "/", scene.outsider).raw.decode()
    assert f'<span class="who">{scene.outsider.email} (admin)</span>' in nameless
    employees = ok(get(scene, "/api/v1/employees", scene.manager))["employees"]
    assert [(e["user_id"], e["display_name"]) for e in employees] == [
        (scene.employee.user_id, "Ann Example")
    ]


# --- The start page


def test_the_start_page_shows_who_records_who_is_silent_and_the_time_recorded_today(
    scene: Scene, broker: BrokerProcess
) -> None:
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

    async def quiet(services: Services) -> str:
        issued = await services.devices.issue_enrollment_code(
            scene.tenant.tenant_id, scene.other.user_id, actor="test"
        )
        return (await services.devices.enroll(issued.code, "quiet-pc")).device_id

    in_process(broker, Clock(an_hour_ago), quiet)
    Operator(broker).run(
        operator.assign, tenant=scene.tenant.tenant_id, manager=scene.manager.email,
        employee=scene.other.email,
    )
    beat(scene, scene.device, "recording")
    recorded(scene, scene.device, [20, 30, 10.5])

    now = ok(get(scene, "/api/v1/overview?zone=UTC", scene.manager))
    assert now["day"] == datetime.now(UTC).date().isoformat()
    ann = listed(now, scene.employee.user_id)
    assert (ann["state"], ann["display_name"]) == ("recording", "Ann Example")
    assert ann["recorded_seconds"] >= 60.5, "today's verified segments, summed"
    other = listed(now, scene.other.user_id)
    assert other["state"] == "silent"
    assert datetime.fromisoformat(other["silent_since"]) == an_hour_ago, "its enrollment"
    assert other["recorded_seconds"] == 0
    assert {p["user_id"] for p in now["people"]} == {scene.employee.user_id, scene.other.user_id}

    home = get(scene, "/", scene.manager).raw.decode()
    row = home.split(f'data-user="{scene.employee.user_id}"')[1].split("</tr>")[0]
    assert '<span class="name">Ann Example</span>' in row
    assert "recording now" in row
    assert "1 min 0 s" in row or "1 min 1 s" in row
    quiet_row = home.split(f'data-user="{scene.other.user_id}"')[1].split("</tr>")[0]
    assert "silent since" in quiet_row
    assert f'datetime="{an_hour_ago.isoformat().replace("+00:00", "Z")}"' in quiet_row

    beat(scene, scene.device, "paused_idle")
    ann = listed(ok(get(scene, "/api/v1/overview", scene.manager)), scene.employee.user_id)
    assert (ann["state"], ann["paused_reason"]) == ("paused", "idle")
    assert "paused (idle)" in get(scene, "/", scene.manager).raw.decode()
    beat(scene, scene.device, "paused_locked")
    assert "paused (screen locked)" in get(scene, "/", scene.manager).raw.decode()
    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    beat(scene, scene.device, "recording",
         capture={"state": "blocked", "reason": "no_permission", "since": since})
    ann = listed(ok(get(scene, "/api/v1/overview", scene.manager)), scene.employee.user_id)
    assert ann["state"] == "capture_blocked"
    assert "capture blocked" in get(scene, "/", scene.manager).raw.decode()
    beat(scene, scene.device, "recording")

    # The employee's own start page: their state, no list of others.
    mine = ok(get(scene, "/api/v1/overview", scene.employee))
    assert mine["people"] == []
    assert (mine["me"]["user_id"], mine["me"]["state"]) == (scene.employee.user_id, "recording")
    page = get(scene, "/", scene.employee).raw.decode()
    assert "recording now" in page
    assert 'href="/me"' in page
    assert scene.other.email not in page


def test_only_the_people_the_viewer_may_watch_are_listed(scene: Scene) -> None:
    admins = ok(get(scene, "/api/v1/overview", scene.admin))["people"]
    ids = {p["user_id"] for p in admins}
    assert {scene.employee.user_id, scene.other.user_id} <= ids
    assert scene.manager.user_id not in ids, "managers without a workstation are not watched"
    theirs = ok(get(scene, "/api/v1/overview", scene.outsider))
    assert theirs["people"] == []
    assert scene.employee.email not in get(scene, "/", scene.outsider).raw.decode()
    bad = scene.api.call("GET", "/api/v1/overview?zone=Mars/Base", token=scene.admin.access_token)
    assert bad.status == 400


# --- The audit log and the receipts


def test_a_viewing_is_one_row_with_names_and_links_and_receipts_group_it_too(
    scene: Scene,
) -> None:
    recording_id = recorded(scene, scene.device, [5, 5, 5])
    for seq in range(3):
        view(scene, scene.manager, recording_id, seq)

    rows = ok(get(scene, "/api/v1/admin/audit?action=segment.view_url", scene.admin))["rows"]
    top = rows[0]
    assert (top["kind"], top["views"], top["segments"]) == ("viewing", 3, [0, 2])
    assert top["actor_name"] == f"Max Manager ({scene.manager.email})"
    assert top["actor_link"] == f"/employees/{scene.manager.user_id}"
    assert top["about"] == f"recording of Ann Example ({scene.employee.email})"
    assert top["about_link"] == f"/recordings/{recording_id}"

    page = get(scene, "/audit?action=segment.view_url", scene.admin).raw.decode()
    row = page.split(f'data-seq="{top["seq"]}"')[1].split("</tr>")[0]
    assert "segments 0–2" in row
    assert "(3 view URLs)" in row
    assert f'href="/recordings/{recording_id}"' in row
    assert "Max Manager" in row
    assert "user:" not in row, "no actor ids"
    assert "/rec/" not in row, "no object keys"

    theirs = f"employee={scene.employee.user_id}"
    others = f"employee={scene.other.user_id}&action=segment.view_url"
    about_them = ok(get(scene, f"/api/v1/admin/audit?{theirs}", scene.admin))["rows"]
    assert about_them[0]["seq"] == top["seq"]
    assert all(r["recording_id"] != recording_id for r in ok(
        get(scene, f"/api/v1/admin/audit?{others}", scene.admin))["rows"])
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    assert ok(get(scene, f"/api/v1/admin/audit?from={tomorrow}&zone=UTC", scene.admin))[
        "rows"] == []
    today = datetime.now(UTC).date().isoformat()
    assert ok(get(scene, f"/api/v1/admin/audit?from={today}&to={today}&zone=UTC", scene.admin))[
        "rows"][0]["seq"] >= top["seq"]

    receipts = ok(get(scene, f"/api/v1/employees/{scene.employee.user_id}/receipts",
                      scene.employee))
    assert len([r for r in receipts["receipts"] if r["recording_id"] == recording_id]) == 3
    viewing = receipts["viewings"][0]
    assert (viewing["recording_id"], viewing["views"], viewing["first_seq"],
            viewing["last_seq"]) == (recording_id, 3, 0, 2)
    assert (viewing["viewer"], viewing["viewer_name"]) == (scene.manager.email, "Max Manager")
    mine = get(scene, "/receipts", scene.employee).raw.decode()
    assert "segments 0–2" in mine
    assert "Max Manager" in mine


def test_the_audit_log_pages_through_every_entry_and_the_export_keeps_each(
    scene: Scene, broker: BrokerProcess
) -> None:
    """Views minutes apart are viewings of their own: more rows than a page holds."""
    recording_id = recorded(scene, scene.device, [1])
    start = datetime.now(UTC) - timedelta(days=1)
    manager = Principal(
        kind="user", subject=scene.manager.user_id, tenant_id=scene.tenant.tenant_id,
        user_id=scene.manager.user_id, role="manager",
    )
    clock = Clock(start)

    async def views(services: Services) -> None:
        for n in range(130):
            clock.now = start + timedelta(minutes=6 * n)
            await services.viewing.view_url(manager, recording_id, 0)

    in_process(broker, clock, views)
    total = len(audit_entries(broker, scene.tenant.tenant_id))
    seen: list[int] = []
    covered, path, pages = 0, "/api/v1/admin/audit", 0
    while True:
        body = ok(get(scene, path, scene.admin))
        pages += 1
        assert len(body["rows"]) <= body["page_size"]
        seen += [r["seq"] for r in body["rows"]]
        covered += sum(r["views"] if r["kind"] == "viewing" else 1 for r in body["rows"])
        if body["older"] is None:
            break
        path = f"/api/v1/admin/audit?before={body['older']}"
    assert pages >= 2
    assert len(seen) == len(set(seen)), "no row shows twice"
    assert seen == sorted(seen, reverse=True)
    assert covered == total, "every entry is on a page"

    first = get(scene, "/audit", scene.admin).raw.decode()
    assert 'rel="next"' in first
    assert "Older entries" in first
    exported = scene.api.call("GET", "/api/v1/admin/audit/export", token=scene.admin.access_token)
    assert exported.status == 200
    assert len(exported.raw.decode().splitlines()) == total, "the export keeps every raw entry"


# --- The transparency page


def test_the_transparency_page_lists_the_watchers_devices_policy_and_viewings(
    scene: Scene,
) -> None:
    ok(scene.api.call("PATCH", "/api/v1/admin/policy",
                      {"fps": 2, "idle_seconds": 300, "quality": "compact"},
                      token=scene.admin.access_token))
    recording_id = recorded(scene, scene.device, [2])
    view(scene, scene.manager, recording_id, 0)

    me = ok(get(scene, "/api/v1/me", scene.employee))
    assert [(m["user_id"], m["display_name"], m["role"]) for m in me["managers"]] == [
        (scene.manager.user_id, "Max Manager", "manager")
    ]
    assert scene.admin.user_id in {a["user_id"] for a in me["admins"]}
    assert [(d["device_id"], d["name"]) for d in me["me"]["devices"]] == [
        (scene.device.device_id, "test workstation")
    ]
    assert (me["policy"]["fps"], me["policy"]["idle_seconds"]) == (2, 300)
    assert me["policy"]["quality"] == "compact"
    assert me["timeline"] == f"/employees/{scene.employee.user_id}"
    assert me["viewings"][0]["recording_id"] == recording_id

    page = get(scene, "/me", scene.employee).raw.decode()
    for shown in ("Max Manager", "Ada Admin", "test workstation", "2.0 fps",
                  "after 300 s without input", '<dd class="quality">compact</dd>',
                  f'href="/employees/{scene.employee.user_id}"',
                  f'href="/recordings/{recording_id}"'):
        assert shown in page, shown


def test_another_persons_data_never_shows(scene: Scene) -> None:
    theirs = ok(get(scene, "/api/v1/me", scene.other))
    assert theirs["me"]["user_id"] == scene.other.user_id
    assert scene.device.device_id not in {d["device_id"] for d in theirs["me"]["devices"]}
    assert theirs["viewings"] == [], "nobody viewed theirs"
    page = get(scene, "/me", scene.other).raw.decode()
    assert "test workstation" not in page
    assert scene.employee.email not in page
    assert scene.employee.email not in get(scene, "/receipts", scene.other).raw.decode()

    receipts = f"/api/v1/employees/{scene.employee.user_id}/receipts"
    assert get(scene, receipts, scene.manager).status == 404
    assert get(scene, receipts, scene.other).status == 404
    assert get(scene, receipts, scene.outsider).status == 404
    for who in (scene.employee, scene.manager):
        assert get(scene, "/api/v1/admin/audit", who).status == 403
    outside = ok(get(scene, "/api/v1/admin/audit", scene.outsider))["rows"]
    assert scene.employee.user_id not in str(outside)
    assert scene.employee.user_id not in str(ok(get(scene, "/api/v1/me", scene.outsider)))


# --- A day's "live"


def test_a_recording_is_live_only_while_its_agent_is_heard_from(scene: Scene) -> None:
    """An agent gone for good leaves its recording open: the day stops calling it live (and
    the day player stops waiting for more) once its device is silent or revoked."""
    device = enroll(scene.api, scene.broker, scene.tenant, scene.other.user_id)
    recording_id = recorded(scene, device, [2.0])
    path = f"/api/v1/employees/{scene.other.user_id}/days/{datetime.now(UTC).date()}?zone=UTC"

    def day() -> dict[str, Any]:
        body: dict[str, Any] = ok(get(scene, path, scene.admin))
        [rec] = [r for r in body["recordings"] if r["recording_id"] == recording_id]
        assert rec["state"] == "recording", "still open: nothing finished it"
        return body

    beat(scene, device, "recording", interval=2)  # silent after 3 intervals
    assert day()["live"] is True
    time.sleep(3 * 2 + 0.5)
    assert day()["live"] is False, "silent for three heartbeat intervals: not live"
    beat(scene, device, "recording", interval=2)
    assert day()["live"] is True, "heard from again"
    Operator(scene.broker).run(operator.revoke_device, tenant=scene.tenant.tenant_id,
                               device=device.device_id)
    assert day()["live"] is False, "a revoked device records nothing more"
