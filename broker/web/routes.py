"""The route table: every route, who may call it, and what it takes and returns.

It is data, so the app, the OpenAPI document and the tests (which walk it) share one list:
a new route cannot be added without saying how it is authenticated.

`auth` is "public", "device" (a device's bearer token), "user" (a person's bearer token or
session cookie), "device_or_user", or "refresh_cookie" (a browser session's refresh cookie
and its CSRF token, checked by the session service itself; the handler takes no principal).
`roles` limits a user route to those roles (empty: every role); what a person may then see
is decided by `broker.access`.

`request` names the body's model (`shared.wire`, `shared.api`): the binder reads the body
once (JSON only: 415 otherwise), decodes it into the model (400 naming the field) after the
caller is authenticated, and hands the handler the typed object as its last argument.
`responses` names each status's reply model; the OpenAPI document is generated from both.
A path id that no row can have (NUL, over 100 characters) is a 404 before any handler runs.

Every call a device makes (a "device" route, or "device_or_user" with a device's token) is
counted against that device's request budgets once its token is verified
(`broker.devices.ratelimit`); `creates` marks the routes that add rows without bound, which
spend the stricter budget too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from broker.errors import Forbidden, NotFound
from broker.identity import Principal
from broker.web import meta
from broker.web.api import accounts as admin_handlers
from broker.web.api import auth as user_handlers
from broker.web.api import devices as agent_handlers
from broker.web.api import enrollment as device_handlers
from broker.web.api import fleet as fleet_handlers
from broker.web.api import organisation as organisation_handlers
from broker.web.api import people as people_handlers
from broker.web.api import recordings as recording_handlers
from broker.web.api import storage as storage_handlers
from broker.web.appkeys import PRINCIPAL, SERVICES
from broker.web.cookies import REFRESH_PATH
from broker.web.guard import (
    device_or_user_principal,
    device_principal,
    device_token_principal,
    user_principal,
)
from broker.web.http import read_body
from broker.web.pages import admin_fleet as page_fleet
from broker.web.pages import admin_organisation as page_organisation
from broker.web.pages import admin_people as page_people
from broker.web.pages import admin_storage as page_admin_storage
from broker.web.pages import audit as page_audit
from broker.web.pages import day as page_day
from broker.web.pages import forms as pages_forms
from broker.web.pages import invitation as page_invitation
from broker.web.pages import overview as page_overview
from broker.web.pages import signin as page_signin
from broker.web.pages import static as page_static
from broker.web.pages import views as page_views
from broker.web.pages.html import html_errors
from shared.api import (
    AcceptInvitation,
    Assignment,
    Assignments,
    AuditPage,
    CreateEnrollmentCode,
    DeviceCap,
    DeviceCapChange,
    DeviceRevoked,
    Devices,
    EmployeeDay,
    Employees,
    EnrollmentCodeCreated,
    EnrollmentCodeInfo,
    EnrollmentCodes,
    Health,
    Invitation,
    InvitationAccepted,
    InviteRequest,
    LoginRequest,
    LoginStep,
    MfaRequest,
    NameChange,
    Organisation,
    OrganisationChange,
    Overview,
    People,
    Person,
    Receipts,
    Recordings,
    RegisterDevice,
    RoleChange,
    Session,
    SessionRefreshed,
    SignedOut,
    StoragePolicies,
    StorageRequest,
    StorageSaved,
    StorageStatus,
    Transparency,
    Unassigned,
    ViewUrl,
)
from shared.model import Model
from shared.wire import (
    MAX_ID,
    EnrollRequest,
    GapReport,
    Heartbeat,
    HeartbeatReceived,
    PolicyPatch,
    PolicySettings,
    RecordingCreated,
    RecordingInfo,
    RefreshRequest,
    SegmentState,
    StartRecording,
    TokenPair,
    UploadGrant,
    UploadRequest,
)

Auth = Literal["public", "device", "user", "device_or_user", "refresh_cookie"]
ADMIN = frozenset({"admin"})
PublicHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# (request), (request, body), (request, principal) or (request, principal, body)
Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    method: str
    path: str
    auth: Auth
    handler: Handler
    summary: str
    request: type[Model] | None = None
    # status → reply model; None: not a JSON model (a page, the OpenAPI document itself)
    responses: dict[int, type[Model] | None] = field(default_factory=dict)
    roles: frozenset[str] = frozenset()
    # A page for browsers (HTML errors, sign-in redirect; `broker.web.pages`), and whether its
    # POST is a plain HTML form carrying the session's CSRF token as the `csrf_token` field.
    page: bool = False
    form: bool = False
    # Each call adds rows nothing else bounds (a recording, a gap report): a device caller
    # spends its stricter budget too (`broker.devices.ratelimit`).
    creates: bool = False
    # A "device" route whose service reads the device row itself, in the request's one
    # transaction (`broker.devices.enrollment.enrolled_device`): the guard verifies the
    # token and spends the budget, and opens no transaction of its own.
    checks_device: bool = False


RECORDING = "/api/v1/recordings/{recording_id}"
PEOPLE = "/api/v1/admin/people"
PERSON = PEOPLE + "/{user_id}"
PERSON_PAGE = "/admin/people/{user_id}"
INVITE = "/invite/{token}"
SEGMENT = RECORDING + "/segments/{seq}"

ROUTES: tuple[Route, ...] = (
    Route(
        method="GET",
        path="/healthz",
        auth="public",
        handler=meta.healthz,
        summary="Readiness, for a load balancer: the database answers, its schema is not "
        "behind this code's migrations, and the replica is not draining (503 otherwise)",
        responses={200: Health},
    ),
    Route(
        method="GET",
        path="/livez",
        auth="public",
        handler=meta.livez,
        summary="Liveness, for a process supervisor: the process answers (no database call)",
        responses={200: Health},
    ),
    Route(
        method="GET",
        path="/api/openapi.json",
        auth="public",
        handler=meta.openapi,
        summary="This API as OpenAPI 3.1",
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/api/v1/devices/enroll",
        auth="public",
        handler=device_handlers.enroll,
        summary="Trade one use of an enrollment code for a device credential",
        request=EnrollRequest,
        responses={201: TokenPair},
    ),
    Route(
        method="POST",
        path="/api/v1/devices/token",
        auth="public",
        handler=device_handlers.refresh,
        summary="Rotate a device refresh token",
        request=RefreshRequest,
        responses={200: TokenPair},
    ),
    Route(
        method="POST",
        path="/api/v1/recordings",
        auth="device",
        handler=recording_handlers.start,
        summary="Start a recording",
        request=StartRecording,
        responses={201: RecordingCreated},
        creates=True,
    ),
    Route(
        method="GET",
        path=RECORDING,
        auth="device_or_user",
        handler=recording_handlers.get,
        summary="A recording's metadata and segments (its device, or a person allowed to see it)",
        responses={200: RecordingInfo},
    ),
    Route(
        method="POST",
        path=RECORDING + "/finish",
        auth="device",
        handler=recording_handlers.finish,
        summary="Mark a recording finished",
        responses={200: RecordingInfo},
    ),
    Route(
        method="POST",
        path=RECORDING + "/gaps",
        auth="device",
        handler=recording_handlers.gaps,
        summary="Report segments of this recording that will never arrive, and why",
        request=GapReport,
        responses={201: RecordingInfo},
        creates=True,
    ),
    Route(
        method="POST",
        path="/api/v1/devices/heartbeat",
        auth="device",
        handler=agent_handlers.beat,
        summary="The calling agent's status, every minute and at start and stop",
        request=Heartbeat,
        responses={200: HeartbeatReceived},
        checks_device=True,
    ),
    Route(
        method="POST",
        path=SEGMENT + "/upload",
        auth="device",
        handler=recording_handlers.upload,
        summary="Declare a segment and get a single-use presigned PUT for it",
        request=UploadRequest,
        responses={200: UploadGrant},
        checks_device=True,
    ),
    Route(
        method="POST",
        path=SEGMENT + "/complete",
        auth="device",
        handler=recording_handlers.complete,
        summary="Have the broker verify the uploaded object (HeadObject)",
        responses={200: SegmentState},
        checks_device=True,
    ),
    Route(
        method="POST",
        path="/api/v1/auth/login",
        auth="public",
        handler=user_handlers.login,
        summary="Login step one: password → a short-lived, single-use MFA challenge",
        request=LoginRequest,
        responses={200: LoginStep},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/mfa",
        auth="public",
        handler=user_handlers.mfa,
        summary="Login step two: challenge + TOTP or recovery code → session",
        request=MfaRequest,
        responses={200: Session},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/token",
        auth="public",
        handler=user_handlers.refresh,
        summary="Rotate a person's refresh token (reuse revokes the session)",
        request=RefreshRequest,
        responses={200: Session},
    ),
    Route(
        method="POST",
        path=REFRESH_PATH,
        auth="refresh_cookie",
        handler=user_handlers.refresh_browser,
        summary="Keep a browser session: the refresh cookie and X-CSRF-Token → new cookies "
        "(reuse revokes the session; idle timeout and absolute lifetime apply)",
        responses={200: SessionRefreshed},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/logout",
        auth="user",
        handler=user_handlers.logout,
        summary="End this session",
        responses={200: SignedOut},
    ),
    Route(
        method="POST",
        path="/api/v1/auth/sign-out-everywhere",
        auth="user",
        handler=user_handlers.sign_out_everywhere,
        summary="End every session of this person",
        responses={200: SignedOut},
    ),
    Route(
        method="POST",
        path="/api/v1/devices/register",
        auth="user",
        handler=user_handlers.register_device,
        summary="Enroll the signed-in person's own workstation",
        request=RegisterDevice,
        responses={201: TokenPair},
    ),
    Route(
        method="GET",
        path="/api/v1/employees",
        auth="user",
        handler=recording_handlers.employees,
        summary="The people whose recordings the caller may see besides their own",
        responses={200: Employees},
    ),
    Route(
        method="GET",
        path="/api/v1/employees/{user_id}/recordings",
        auth="user",
        handler=recording_handlers.employee_recordings,
        summary="A person's recordings (their own, or one the caller may see)",
        responses={200: Recordings},
    ),
    Route(
        method="POST",
        path=SEGMENT + "/view",
        auth="user",
        handler=recording_handlers.view,
        summary="A short-lived presigned GET for one verified segment (audited; the "
        "recording's own person, their managers, the tenant's admins: `broker.access`)",
        responses={200: ViewUrl},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/assignments",
        auth="user",
        roles=ADMIN,
        handler=admin_handlers.assign,
        summary="Let a manager see an employee's recordings",
        request=Assignment,
        responses={200: Assignment, 201: Assignment},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/devices",
        auth="user",
        roles=ADMIN,
        handler=admin_handlers.devices,
        summary="The tenant's devices",
        responses={200: Devices},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/devices/{device_id}/revoke",
        auth="user",
        roles=ADMIN,
        handler=admin_handlers.revoke_device,
        summary="Revoke a device: its tokens stop working at once",
        responses={200: DeviceRevoked},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/storage",
        auth="user",
        roles=ADMIN,
        handler=storage_handlers.get_storage,
        summary="The tenant's bucket, access state (ok / access_revoked), external ID, last check",
        responses={200: StorageStatus},
    ),
    Route(
        method="PUT",
        path="/api/v1/admin/storage",
        auth="user",
        roles=ADMIN,
        handler=storage_handlers.put_storage,
        summary="Set the bucket with static keys or a role; the self-check runs first (audited)",
        request=StorageRequest,
        responses={200: StorageSaved},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/storage/check",
        auth="user",
        roles=ADMIN,
        handler=storage_handlers.check_storage,
        summary="Run the storage self-check now (probes appear in the customer's CloudTrail)",
        responses={200: StorageStatus},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/policy",
        auth="user",
        roles=ADMIN,
        handler=agent_handlers.get_policy,
        summary="The recording policy pushed to the tenant's agents (null: each agent decides)",
        responses={200: PolicySettings},
    ),
    Route(
        method="PATCH",
        path="/api/v1/admin/policy",
        auth="user",
        roles=ADMIN,
        handler=agent_handlers.put_policy,
        summary="Set or clear (null) policy keys; agents apply it from their next segment "
        "(audited)",
        request=PolicyPatch,
        responses={200: PolicySettings},
    ),
    # Manager pages (`broker.web.pages`): server-rendered HTML for browsers.
    Route(
        method="GET",
        path="/static/{name}",
        auth="public",
        handler=page_static.static_file,
        summary="The pages' own CSS and JavaScript",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/signin",
        auth="public",
        handler=page_signin.signin_page,
        summary="Sign-in page (password, then TOTP; enrollment on the first sign-in)",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/signin",
        auth="public",
        handler=page_signin.signin,
        summary="Sign-in form, step one: password",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/signin/code",
        auth="public",
        handler=page_signin.signin_code,
        summary="Sign-in form, step two: TOTP or recovery code → session cookie",
        page=True,
        responses={200: None, 303: None},
    ),
    Route(
        method="POST",
        path="/logout",
        auth="user",
        handler=page_signin.logout,
        summary="Sign-out form (CSRF token as a form field)",
        page=True,
        form=True,
        responses={200: SignedOut, 303: None},
    ),
    Route(
        method="GET",
        path="/",
        auth="user",
        handler=page_overview.home,
        summary="Start page: the people the caller may watch, each with what their "
        "workstations do now and the time recorded today; the caller's own",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/api/v1/overview",
        auth="user",
        handler=page_overview.overview_api,
        summary="The start page's data: the caller's own state and the people they may watch "
        "(recording, paused, silent since, capture blocked; seconds recorded today, cut in "
        "`?zone=` or the pages' zone)",
        responses={200: Overview},
    ),
    Route(
        method="GET",
        path="/me",
        auth="user",
        handler=page_overview.me_page,
        summary="The transparency page: who may watch the caller, their devices, the "
        "recording policy, their own day, every viewing of their recordings",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/api/v1/me",
        auth="user",
        handler=page_overview.me_api,
        summary="The transparency page's data: managers and admins who may watch the caller, "
        "their devices, the policy in force, their viewings",
        responses={200: Transparency},
    ),
    Route(
        method="GET",
        path="/employees/{user_id}",
        auth="user",
        handler=page_day.employee_day,
        summary="A person's day: its timeline (zoom, pan, every gap with its reason; a click "
        "plays from there), calendar, recordings and gaps (the person, their managers, the "
        "admins)",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/employees/{user_id}/play",
        auth="user",
        handler=page_day.day_player,
        summary="The day player: every recording of a day back to back, skipping the gaps "
        "(`?day=`, `?at=` an RFC 3339 time to start from)",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/api/v1/employees/{user_id}/days/{day}",
        auth="user",
        handler=page_day.day_api,
        summary="A person's day (`YYYY-MM-DD`, cut in `?zone=`, else the pages' zone): "
        "recorded spans, gaps with their reasons, recordings with their verified segments",
        responses={200: EmployeeDay},
    ),
    Route(
        method="GET",
        path="/recordings/{recording_id}",
        auth="user",
        handler=page_views.player,
        summary="The player: a recording's segments as one timeline, straight from the bucket",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/receipts",
        auth="user",
        handler=page_audit.my_receipts,
        summary="Who viewed the caller's recordings, and when",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/audit",
        auth="user",
        roles=ADMIN,
        handler=page_audit.audit_page,
        summary="The tenant's audit log with names and links, viewings grouped, page by page "
        "(`?before=`), filtered by actor, action, person and period",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/audit",
        auth="user",
        roles=ADMIN,
        handler=page_audit.audit_api,
        summary="A page of the audit log as the audit page shows it: names, links, viewings "
        "grouped; `?before=` (the previous page's `older`), `?actor=&action=&employee=&from=&to=`"
        " (days cut in `?zone=` or the pages' zone)",
        responses={200: AuditPage},
    ),
    Route(
        method="GET",
        path="/api/v1/employees/{user_id}/receipts",
        auth="user",
        handler=page_audit.receipts_api,
        summary="View receipts: who viewed this person's recordings (the person or an admin), "
        "each view URL and the same grouped into viewings",
        responses={200: Receipts},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/audit/export",
        auth="user",
        roles=ADMIN,
        handler=page_audit.audit_export,
        summary="The tenant's audit log as JSON lines, every raw entry (same filters as the "
        "page)",
        responses={200: None},
    ),
    # --- The tenant admin's console (`/admin/...` pages over `/api/v1/admin/...` routes).
    # The organisation: its time zone.
    Route(
        method="GET",
        path="/api/v1/admin/organisation",
        auth="user",
        roles=ADMIN,
        handler=organisation_handlers.get_organisation,
        summary="The tenant's name and the time zone its pages cut days in (null: each "
        "viewer's own)",
        responses={200: Organisation},
    ),
    Route(
        method="PUT",
        path="/api/v1/admin/organisation",
        auth="user",
        roles=ADMIN,
        handler=organisation_handlers.put_organisation,
        summary="Set the tenant's time zone (an IANA name) or clear it (null; audited)",
        request=OrganisationChange,
        responses={200: Organisation},
    ),
    Route(
        method="GET",
        path="/admin/organisation",
        auth="user",
        roles=ADMIN,
        handler=page_organisation.organisation_page,
        summary="The organisation page: the time zone of the tenant's pages",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/organisation",
        auth="user",
        roles=ADMIN,
        handler=page_organisation.organisation_form,
        summary="The organisation form (CSRF token as a form field)",
        page=True,
        form=True,
        responses={200: None},
    ),
    #
    # People: the list, invitations and their acceptance, roles, deactivation, 2FA reset,
    # who watches whom.
    Route(
        method="GET",
        path=PEOPLE,
        auth="user",
        roles=ADMIN,
        handler=people_handlers.list_people,
        summary="The tenant's people: role, state, 2FA, last sign-in, who watches whom",
        responses={200: People},
    ),
    Route(
        method="POST",
        path=PEOPLE + "/invite",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.invite,
        summary="Invite a person by email: a one-time link (7 days) where they set a password, "
        "then enrol TOTP at sign-in; 201, or 200 when it replaces a still-invited person's link; "
        "409 for an email that has an account (audited)",
        request=InviteRequest,
        responses={200: Invitation, 201: Invitation},
    ),
    Route(
        method="GET",
        path=PERSON,
        auth="user",
        roles=ADMIN,
        handler=people_handlers.get_person,
        summary="One person, with the managers who watch them and the employees they watch",
        responses={200: Person},
    ),
    Route(
        method="POST",
        path=PERSON + "/role",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.set_role,
        summary="Change a person's role; assignments that no longer fit go; the last active "
        "admin cannot be demoted (409) (audited)",
        request=RoleChange,
        responses={200: Person},
    ),
    Route(
        method="POST",
        path=PERSON + "/name",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.set_name,
        summary="Set the name a person goes by, shown beside their email (null or blank: "
        "none) (audited)",
        request=NameChange,
        responses={200: Person},
    ),
    Route(
        method="GET",
        path=PERSON + "/device-cap",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.device_cap,
        summary="A person's device cap: their own, the organisation's, the default, the one in "
        "force, and their devices not revoked",
        responses={200: DeviceCap},
    ),
    Route(
        method="POST",
        path=PERSON + "/device-cap",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.set_device_cap,
        summary="Set how many devices not revoked a person may have (null: the organisation's "
        "cap) (audited)",
        request=DeviceCapChange,
        responses={200: DeviceCap},
    ),
    Route(
        method="POST",
        path=PERSON + "/deactivate",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.deactivate,
        summary="Deactivate a person: sessions, devices and codes end at once; never the last "
        "active admin (409) (audited)",
        responses={200: Person},
    ),
    Route(
        method="POST",
        path=PERSON + "/reactivate",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.reactivate,
        summary="Let a deactivated person sign in again (devices stay revoked) (audited)",
        responses={200: Person},
    ),
    Route(
        method="POST",
        path=PERSON + "/reset-2fa",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.reset_mfa,
        summary="Reset a person's TOTP and recovery codes and end their sessions; they enrol "
        "again at the next sign-in (audited)",
        responses={200: Person},
    ),
    Route(
        method="GET",
        path="/api/v1/admin/assignments",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.list_assignments,
        summary="Who watches whom: every manager-employee pair of the tenant",
        responses={200: Assignments},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/assignments/unassign",
        auth="user",
        roles=ADMIN,
        handler=people_handlers.unassign,
        summary="A manager no longer sees an employee's recordings (audited)",
        request=Assignment,
        responses={200: Unassigned},
    ),
    Route(
        method="POST",
        path="/api/v1/invitations/accept",
        auth="public",
        handler=people_handlers.accept,
        summary="Accept an invitation: its token and a password (the operator's rules); then "
        "sign in, which enrols TOTP (audited)",
        request=AcceptInvitation,
        responses={200: InvitationAccepted},
    ),
    Route(
        method="GET",
        path=INVITE,
        auth="public",
        handler=page_invitation.invitation_page,
        summary="An invitation link's page: choose a password",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path=INVITE,
        auth="public",
        handler=page_invitation.accept,
        summary="The invitation form: the password twice (the page's double-submit token)",
        page=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path="/admin/people",
        auth="user",
        roles=ADMIN,
        handler=page_people.people_page,
        summary="People: the list, the invitation form, each person's actions",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/people/invite",
        auth="user",
        roles=ADMIN,
        handler=page_people.invite,
        summary="The invitation form: the page shows the one-time link once",
        page=True,
        form=True,
        responses={200: None},
    ),
    Route(
        method="GET",
        path=PERSON_PAGE,
        auth="user",
        roles=ADMIN,
        handler=page_people.person_page,
        summary="A person: role, deactivation, 2FA reset, who watches whom",
        page=True,
        responses={200: None},
    ),
    *(
        Route(
            method="POST",
            path=f"{PERSON_PAGE}/{action}",
            auth="user",
            roles=ADMIN,
            handler=handler,
            summary=summary,
            page=True,
            form=True,
            responses={303: None},
        )
        for action, handler, summary in (
            ("role", page_people.set_role, "The role form (field `role`)"),
            ("name", page_people.set_name, "The name form (field `name`)"),
            ("device-cap", page_people.set_device_cap,
             "The device cap form (field `device_cap`, empty: the organisation's cap)"),
            ("deactivate", page_people.deactivate, "The deactivation form"),
            ("reactivate", page_people.reactivate, "The reactivation form"),
            ("reset-2fa", page_people.reset_mfa, "The 2FA reset form"),
            ("assign", page_people.assign,
             "Assign a manager or an employee (field `other`) to this person"),
            ("unassign", page_people.unassign,
             "Unassign a manager or an employee (field `other`) from this person"),
        )
    ),
    # (end of people)
    #
    # Fleet: enrollment codes, devices, the recording policy page.
    Route(
        method="GET",
        path="/api/v1/admin/enrollment-codes",
        auth="user",
        roles=ADMIN,
        handler=fleet_handlers.list_codes,
        summary="The tenant's enrollment codes, newest first (never a code itself)",
        responses={200: EnrollmentCodes},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/enrollment-codes",
        auth="user",
        roles=ADMIN,
        handler=fleet_handlers.create_code,
        summary="Create a code enrolling up to max_uses workstations of a person; the reply "
        "holds the code (this once) and the `bucketreel-agent enroll` command (audited)",
        request=CreateEnrollmentCode,
        responses={201: EnrollmentCodeCreated},
    ),
    Route(
        method="POST",
        path="/api/v1/admin/enrollment-codes/{code_id}/revoke",
        auth="user",
        roles=ADMIN,
        handler=fleet_handlers.revoke_code,
        summary="Revoke an enrollment code: it enrolls no more devices (audited)",
        responses={200: EnrollmentCodeInfo},
    ),
    Route(
        method="GET",
        path="/admin/devices",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.devices_page,
        summary="Devices page: state, agent, last heartbeat, backlog, last upload, gaps",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/devices/{device_id}/revoke",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.revoke_device,
        summary="Revoke-device form (its tokens stop working at once)",
        page=True,
        form=True,
        responses={303: None},
    ),
    Route(
        method="GET",
        path="/admin/enrollment",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.enrollment_page,
        summary="Enrollment page: create codes, the agent's command, the codes and their state",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/enrollment",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.create_code,
        summary="New-code form: the page again with the code and command, shown this once",
        page=True,
        form=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/enrollment/{code_id}/revoke",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.revoke_code,
        summary="Revoke-code form",
        page=True,
        form=True,
        responses={303: None},
    ),
    Route(
        method="GET",
        path="/admin/policy",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.policy_page,
        summary="Recording policy page: fps, segment length, idle timeout, each with its cost",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/policy",
        auth="user",
        roles=ADMIN,
        handler=page_fleet.save_policy,
        summary="Recording policy form (an empty field leaves the setting to the agents)",
        page=True,
        form=True,
        responses={200: None},
    ),
    # (end of fleet)
    #
    # Storage: the bucket, its policies, the self-check, the rotation of keys.
    Route(
        method="GET",
        path="/api/v1/admin/storage/policies",
        auth="user",
        roles=ADMIN,
        handler=storage_handlers.get_policies,
        summary="The IAM identity, bucket and trust policies for the tenant's bucket (or for "
        "?bucket=&prefix= before one is saved), with the tenant's external ID",
        responses={200: StoragePolicies},
    ),
    Route(
        method="GET",
        path="/admin/storage",
        auth="user",
        roles=ADMIN,
        handler=page_admin_storage.storage_page,
        summary="Storage: the bucket, the access state, the last self-check, the policies to "
        "install, and the form that hands the broker new keys or a role",
        page=True,
        responses={200: None},
    ),
    Route(
        method="POST",
        path="/admin/storage",
        auth="user",
        roles=ADMIN,
        handler=page_admin_storage.save_storage,
        summary="Storage form: set or replace the bucket and its keys or role; the self-check "
        "runs first and a failed one saves nothing (the page again, 4xx)",
        page=True,
        form=True,
        responses={303: None},
    ),
    Route(
        method="POST",
        path="/admin/storage/check",
        auth="user",
        roles=ADMIN,
        handler=page_admin_storage.check_storage,
        summary="Storage form: run the self-check now",
        page=True,
        form=True,
        responses={303: None},
    ),
    #
    # (end of storage)
)


_PRINCIPALS = {
    "device": device_principal,
    "user": user_principal,
    "device_or_user": device_or_user_principal,
}


_IDS = re.compile(r"{(\w+_id)}")


def _check_ids(request: web.Request, names: list[str]) -> None:
    for name in names:
        value = request.match_info.get(name, "")
        if len(value) > MAX_ID or "\x00" in value:
            raise NotFound(f"no such {name.removesuffix('_id')}")


def _bind(route: Route) -> PublicHandler:
    ids = _IDS.findall(route.path)
    model = route.request
    principal_of = _PRINCIPALS.get(route.auth)
    if route.checks_device:
        if route.auth != "device":
            raise ValueError(f"{route.path}: only a device route can check the device itself")
        principal_of = device_token_principal
    roles = route.roles
    call = f"{route.method} {route.path}"  # the template: no ids in logs or audit details

    async def handler(request: web.Request) -> web.StreamResponse:
        _check_ids(request, ids)
        args: list[Any] = []
        if principal_of is not None:
            if route.form:
                request = await pages_forms.csrf_from_form(request)

            async def spend(device: Principal) -> None:
                # After the token is verified (only this device's valid token can spend its
                # budget), before the database is asked about the device.
                await request.app[SERVICES].device_limits.check(
                    device, call=call, creates=route.creates
                )

            principal = await principal_of(request, spend)
            request[PRINCIPAL] = principal
            if roles and principal.role not in roles:
                raise Forbidden(f"this needs one of the roles: {', '.join(sorted(roles))}")
            args.append(principal)
        if model is not None:
            args.append(await read_body(request, model))
        return await route.handler(request, *args)

    return handler


def install(app: web.Application) -> None:
    for route in ROUTES:
        bound = _bind(route)
        app.router.add_route(route.method, route.path, html_errors(bound) if route.page else bound)
