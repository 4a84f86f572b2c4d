"""Wire models of the people's and admins' API: sign-in, sessions, devices, storage, viewing.

Like `shared.wire` (the device API), each body is a `shared.model.Model` whose fields carry
their limits; the broker's binder decodes requests with them, its handlers shape replies
with them, and the OpenAPI document is generated from them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from msgspec import UNSET, Meta, UnsetType, field

from shared.errors import ErrorCode
from shared.model import Model, invalid
from shared.wire import (
    CaptureState,
    DeviceName,
    Id,
    PublicKey,
    Seq,
    Time,
    Token,
    check_public_key,
)

MAX_TENANT = 200
MAX_EMAIL = 320
MAX_PASSWORD = 1024
MAX_MFA_CODE = 40
MAX_ENDPOINT_URL = 500

Email = Annotated[str, Meta(min_length=1, max_length=MAX_EMAIL)]


class Error(Model):
    """Every refusal: a code from a fixed list and a sentence for a person."""

    error: ErrorCode
    message: str


class Health(Model):
    status: Literal["ok"]


class LoginRequest(Model):
    tenant: Annotated[str, Meta(min_length=1, max_length=MAX_TENANT,
                                description="the tenant's name or id")]
    email: Email
    password: Annotated[str, Meta(min_length=1, max_length=MAX_PASSWORD)]


class LoginStep(Model, omit_defaults=True):
    mfa: Literal["totp", "enroll"]
    challenge: Token
    expires_in: int
    provisioning_uri: Annotated[str, Meta(description="otpauth:// URI (enroll only)")] | None = (
        None
    )
    mfa_reset: Annotated[bool, Meta(
        description="enroll only: an admin reset this person's 2FA, so the codes of their old "
        "authenticator entry no longer work (present only when true)"
    )] = False


class MfaRequest(Model):
    challenge: Token
    code: Annotated[str, Meta(min_length=1, max_length=MAX_MFA_CODE,
                              description="a 6-digit TOTP code or a recovery code")]
    # a browser: set the session cookies instead (needs the sign-in page's double-submit
    # token in X-CSRF-Token, see broker.web.cookies)
    cookie: bool = False


class FailedSignIns(Model):
    """Failed passwords and codes for the account since its last full sign-in."""

    count: int
    last_at: Time | None


class Session(Model, omit_defaults=True):
    """Bearer tokens (`cookie: false`), or for a browser only the CSRF token (the session is
    in cookies); recovery codes once, at enrollment; failed sign-ins since the last one, if
    any (the person sees that someone tried)."""

    expires_in: int
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: Literal["Bearer"] | None = None
    csrf_token: str | None = None
    recovery_codes: list[str] | None = None
    failed_sign_ins: FailedSignIns | None = None


class SessionRefreshed(Model):
    expires_in: int  # seconds the new access cookie lives
    expires_at: Time
    csrf_token: str


class SignedOut(Model):
    status: Literal["signed_out"]


class RegisterDevice(Model, omit_defaults=True):
    name: DeviceName
    public_key: PublicKey | None = None

    def __post_init__(self) -> None:
        check_public_key(self.public_key)


class Employee(Model):
    user_id: Id
    email: str
    role: str
    display_name: str | None = None  # the name they go by, shown beside the email


class Employees(Model):
    employees: list[Employee]


class RecordingSummary(Model):
    recording_id: Id
    device_id: Id | None
    state: str
    started_at: Time
    finished_at: Time | None


class Recordings(Model):
    recordings: list[RecordingSummary]


class ViewUrl(Model):
    url: Annotated[str, Meta(extra_json_schema={"format": "uri"})]
    expires_at: Time


class Receipt(Model):
    at: Time
    viewer: str
    viewer_role: str
    recording_id: Id
    seq: Seq
    own: bool  # the person watched their own recording


class Viewing(Model):
    """One viewing session: the view URLs one viewer had minted for consecutive segments of
    one recording, each within `broker.audit.viewings.CLOSE` of the one before."""

    viewer: str  # the viewer's email, or the actor ("operator", "device:…")
    viewer_id: Id | None  # the viewer's user id (None: not a person)
    viewer_name: str | None
    viewer_role: str
    own: bool  # the person watched their own recording
    recording_id: Id
    first_at: Time
    last_at: Time
    first_seq: Seq  # the segments viewed, lowest and highest
    last_seq: Seq
    views: int  # how many view URLs (audit entries) it holds
    entries: list[int]  # their audit log numbers, newest first


class Receipts(Model):
    receipts: list[Receipt]  # every view URL, newest first
    viewings: list[Viewing] = field(default_factory=list)  # the same, grouped, newest first


class Assignment(Model):
    manager_id: Id
    employee_id: Id


# revoked; silent (not heard from for three intervals); else what its agent last reported
# (enrolled: nothing yet)
DeviceState = Literal[
    "recording", "paused", "starting", "stopped", "enrolled", "silent", "revoked", "unknown"
]


class DeviceInfo(Model):
    device_id: Id
    user_id: Id
    name: str
    created_at: Time
    revoked_at: Time | None
    last_seen_at: Time | None = None
    last_status: dict[str, Any] | None = None  # its last heartbeat (shared.wire.Heartbeat)
    silent: bool = False
    custody_key: bool = False
    # whether its screen capture delivers pictures, as its agent last said (null: not running)
    capture: CaptureState | None = None
    # the fleet view (`broker.devices.fleet`): its person, what its agent last reported, its
    # latest upload and the latest gaps of its recordings
    email: str = ""
    state: DeviceState = "enrolled"
    paused_reason: str | None = None
    agent_version: str | None = None
    spool_segments: int = 0
    spool_bytes: int = 0
    last_upload: DeviceUpload | None = None
    recent_gaps: list[DeviceGap] = field(default_factory=list)


class Devices(Model):
    devices: list[DeviceInfo]


class DeviceRevoked(Model):
    device_id: Id
    state: Literal["revoked"]


def check_endpoint_url(value: str | None) -> None:
    """An http(s) URL with a host (the storage service decides which hosts it accepts)."""
    if value is None:
        return
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a port out of range or not a number
    except ValueError:
        raise invalid("endpoint_url", "must be an http or https URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("endpoint_url", "must be an http or https URL with a host")
    del port


class StorageRequest(Model):
    """The tenant's bucket with static keys (`access_key_id` and `secret_access_key`) or a role
    (`role_arn`); the self-check runs before anything is saved."""

    bucket: Annotated[str, Meta(min_length=1, max_length=63)]
    region: Annotated[str, Meta(min_length=1, max_length=40)]
    endpoint_url: Annotated[str, Meta(min_length=1, max_length=MAX_ENDPOINT_URL)] | None = None
    prefix: Annotated[str, Meta(max_length=200)] = ""
    access_key_id: Annotated[str, Meta(min_length=1, max_length=128)] | None = None
    secret_access_key: Annotated[
        str, Meta(min_length=1, max_length=256, extra_json_schema={"writeOnly": True})
    ] | None = None
    role_arn: Annotated[str, Meta(min_length=1, max_length=2048)] | None = None
    accept_risk: bool = False  # save despite the self-check's findings

    def __post_init__(self) -> None:
        check_endpoint_url(self.endpoint_url)


class Finding(Model):
    name: str
    severity: str
    message: str
    outcome: str


class Probe(Model):
    name: str
    operation: str
    expected: str
    outcome: str
    passed: bool


class StorageCheck(Model):
    checked_at: Time
    can_write: bool
    findings: list[Finding]
    probes: list[Probe]


class StorageSaved(Model):
    tenant_id: Id
    bucket: str
    auth_mode: Literal["keys", "role"]
    credential_version: int
    check: StorageCheck


class StorageStatus(Model):
    """The storage (never a secret), the access state, the last self-check; the bucket's
    fields only once one is configured."""

    configured: bool
    external_id: str
    state: Literal["ok", "access_revoked"]
    state_reason: str | None
    state_changed_at: Time | None
    last_check: StorageCheck | None
    bucket: str | UnsetType = UNSET
    region: str | UnsetType = UNSET
    endpoint_url: str | UnsetType | None = UNSET
    prefix: str | UnsetType = UNSET
    auth_mode: Literal["keys", "role"] | UnsetType = UNSET
    access_key_id: str | UnsetType | None = UNSET
    role_arn: str | UnsetType | None = UNSET
    credential_version: int | UnsetType = UNSET


class Organisation(Model):
    """The tenant's own settings: its name and the IANA zone its pages cut days in (null:
    each viewer's browser zone)."""

    name: str
    time_zone: str | None


class OrganisationChange(Model, forbid_unknown_fields=True):
    """`PUT /api/v1/admin/organisation`: the zone (an IANA name, at most 64 characters), or
    null for each viewer's own."""

    unknown_field = "not an organisation setting (known: time_zone)"

    time_zone: Annotated[str, Meta(max_length=64)] | None

# --- The tenant admin's console: people, invitations, who watches whom.

RoleName = Literal["employee", "manager", "admin"]
PersonState = Literal["active", "invited", "deactivated"]
MAX_DISPLAY_NAME = 200
DisplayName = Annotated[str, Meta(max_length=MAX_DISPLAY_NAME)]


class PersonRef(Model):
    """A person named in another's assignments."""

    user_id: Id
    email: str
    display_name: str | None
    state: PersonState


class Person(Model):
    """A person as the tenant's admins see them. `mfa_reset_pending`: an admin reset their
    two-factor authentication and they have not enrolled again yet."""

    user_id: Id
    email: str
    display_name: str | None  # the name they go by (null: the email alone)
    role: RoleName
    state: PersonState
    created_at: Time
    totp_enrolled_at: Time | None
    mfa_reset_pending: bool
    mfa_reset_at: Time | None
    last_sign_in_at: Time | None
    managers: list[PersonRef]  # who watches this person's recordings (an employee's)
    employees: list[PersonRef]  # whose recordings this person watches (a manager's)


class People(Model):
    people: list[Person]


class InviteRequest(Model):
    email: Email
    role: RoleName
    name: DisplayName | None = None  # the name they go by, shown beside the email


DeviceCapValue = Annotated[int, Meta(ge=0, le=10_000)]


class DeviceCapChange(Model, forbid_unknown_fields=True):
    """`POST /api/v1/admin/people/{id}/device-cap`: how many devices not revoked the person may
    have (null: the organisation's cap applies)."""

    unknown_field = "not a field of a device cap change (known: device_cap)"

    device_cap: DeviceCapValue | None


class DeviceCap(Model):
    """A person's device cap: their own (null: none), the organisation's (null: none), the
    broker's default, the one in force, and their devices not revoked."""

    user_id: Id
    device_cap: int | None
    tenant_device_cap: int | None
    default: int
    effective: int
    active_devices: int


class NameChange(Model, forbid_unknown_fields=True):
    """`POST /api/v1/admin/people/{id}/name`: the name the person goes by (null or blank:
    none, the email alone)."""

    unknown_field = "not a field of a name change (known: name)"

    name: DisplayName | None


class Invitation(Model):
    """The one-time link, shown once: the person opens it, sets a password, then signs in and
    enrols TOTP. `replaced`: the person was invited before, and that link no longer works."""

    user_id: Id
    email: str
    role: RoleName
    state: Literal["invited"]
    invite_url: Annotated[str, Meta(extra_json_schema={"format": "uri"})]
    expires_at: Time
    replaced: bool


class AcceptInvitation(Model):
    token: Token
    password: Annotated[str, Meta(min_length=1, max_length=MAX_PASSWORD)]


class InvitationAccepted(Model):
    """The password is set; sign in with the organisation's name and the email, where the
    first sign-in enrols TOTP."""

    user_id: Id
    email: str
    tenant: str
    state: Literal["active"]


class RoleChange(Model):
    role: RoleName


class AssignedPair(Model):
    manager_id: Id
    manager_email: str
    manager_name: str | None
    employee_id: Id
    employee_email: str
    employee_name: str | None
    created_at: Time


class Assignments(Model):
    assignments: list[AssignedPair]


class Unassigned(Model):
    manager_id: Id
    employee_id: Id
    removed: bool  # false: the manager did not watch the employee


# --- What people see now (the start page, the transparency page) and the audit log read by
# people: `GET /api/v1/overview`, `GET /api/v1/me`, `GET /api/v1/admin/audit`.

DeviceStateName = Literal[
    "recording", "paused", "starting", "stopped", "enrolled", "silent", "revoked", "unknown"
]
PersonStateNow = Literal[
    "recording", "paused", "capture_blocked", "starting", "silent", "stopped", "enrolled",
    "no_device",
]


class DeviceNow(Model):
    """A workstation as its last heartbeat left it (`broker.devices.fleet.state_of`)."""

    device_id: Id
    name: str
    state: DeviceStateName
    paused_reason: str | None  # idle, locked, capture_blocked
    capture_blocked: bool  # its capture delivers no picture (its last report says)
    last_seen_at: Time | None
    silent_since: Time | None  # when silent: last heard from (or enrolled, never heard)


class PersonNow(Model):
    """A person and what their workstations do now; `recorded_seconds` is the verified
    segments' time on `Overview.day` (cut in `Overview.zone`)."""

    user_id: Id
    email: str
    display_name: str | None
    role: RoleName
    state: PersonStateNow  # the most telling of their devices' states
    paused_reason: str | None
    silent_since: Time | None
    recorded_seconds: float
    devices: list[DeviceNow]


class Overview(Model):
    """The start page: the caller's own state and the people they may watch besides."""

    day: str
    zone: str
    me: PersonNow
    people: list[PersonNow]


class Watcher(Model):
    user_id: Id
    email: str
    display_name: str | None
    role: RoleName


class RecordingPolicy(Model):
    """The tenant's recording policy (null: each agent's own setting)."""

    fps: float | None
    segment_seconds: float | None
    idle_seconds: int | None
    updated_at: Time | None
    quality: str | None = None  # a shared.wire.QualityLevel


class Transparency(Model):
    """What a person may know about their own recording: who may watch them (their managers;
    every admin of the organisation), their devices, the policy in force, where their own day
    is, and every viewing of their recordings."""

    me: PersonNow
    managers: list[Watcher]
    admins: list[Watcher]
    policy: RecordingPolicy
    timeline: str  # the path of their own day page
    viewings: list[Viewing]


class AuditRow(Model):
    """A row of the audit page: one entry, or one viewing (`kind`) of several. `actor_name`
    and `about` say in words who did it and what it was about; `links` the pages they are."""

    kind: Literal["entry", "viewing"]
    seq: int  # the newest entry's number
    first_seq: int  # the oldest's
    at: Time
    first_at: Time
    actor: str
    actor_name: str
    actor_link: str | None
    action: str
    about: str
    about_link: str | None
    recording_id: Id | None
    segments: list[int]  # a viewing's lowest and highest segment; an entry's segment, if any
    views: int
    details: dict[str, Any]


class AuditPage(Model):
    rows: list[AuditRow]
    older: int | None  # `?before=` of the next page (None: this is the oldest)
    page_size: int


# (end of people)
#
# --- Fleet: enrollment codes, devices.

MAX_CODE_USES = 1000
CODE_TTL_MIN = 300  # seconds: BUCKETREEL_ENROLLMENT_CODE_TTL's range
CODE_TTL_MAX = 30 * 86_400
MAX_CODE_LABEL = 200
CodeState = Literal["active", "used_up", "expired", "revoked"]


class CreateEnrollmentCode(Model, forbid_unknown_fields=True):
    """A code that enrolls up to `max_uses` workstations of one person (1: one-time)."""

    user_id: Id
    max_uses: Annotated[int, Meta(ge=1, le=MAX_CODE_USES)] = 1
    expires_in: Annotated[int, Meta(
        ge=CODE_TTL_MIN, le=CODE_TTL_MAX,
        description="seconds the code works (default: BUCKETREEL_ENROLLMENT_CODE_TTL)",
    )] | None = None
    label: Annotated[str, Meta(min_length=1, max_length=MAX_CODE_LABEL)] | None = None


class EnrollmentCodeInfo(Model):
    """A code as an admin sees it: never the code itself (the broker keeps only its hash)."""

    code_id: Id
    user_id: Id
    email: str
    label: str | None
    uses: int
    max_uses: int
    created_at: Time
    expires_at: Time
    used_at: Time | None  # when its last use was spent
    revoked_at: Time | None
    state: CodeState


class EnrollmentCodes(Model):
    codes: list[EnrollmentCodeInfo]


class EnrollmentCodeCreated(EnrollmentCodeInfo):
    """The new code, this once, and the command that enrolls a workstation with it."""

    code: Annotated[str, Meta(description="shown only in this reply")]
    command: Annotated[str, Meta(description="the `bucketreel-agent enroll` command to run")]


class DeviceUpload(Model):
    """A device's latest verified segment."""

    at: Time
    recording_id: Id
    seq: Seq
    size: int


class DeviceGap(Model):
    """A gap its agent reported in one of the device's recordings (`shared.wire.GapReport`)."""

    recording_id: Id
    reason: str
    reported_at: Time
    segments: int  # how many segments it names
    from_: Time | None = field(default=None, name="from")  # a pause's time range
    to: Time | None = None


# (end of fleet)
#
# --- Storage: the admin's view of the bucket, its policies, the rotation.


class StoragePolicies(Model):
    """The IAM documents for the tenant's bucket, to install in the customer's AWS account:
    the identity policy (for the broker's IAM user or role), the bucket policy (explicit denies
    for that principal), the role option's trust policy (with the tenant's external ID) and
    the vault policy (read and list for the customer's own `bucketreel-vault` credentials).
    Upper-case names in `placeholders` stand for what the broker cannot know: replace them."""

    bucket: str
    prefix: str
    external_id: str
    principal_arn: str
    assumer_arn: str
    placeholders: list[str]
    identity_policy: dict[str, Any]
    bucket_policy: dict[str, Any]
    trust_policy: dict[str, Any]
    vault_policy: dict[str, Any]
#
# (end of storage)


# --- One person's day (`GET /api/v1/employees/{user_id}/days/{day}`): what the day page's
# timeline draws and the day player plays, from the same service.
GapKind = Literal["idle", "locked", "capture_blocked", "silent"]


class DaySpan(Model):
    start: Time
    end: Time
    recording_id: Id


class DayGap(Model):
    """Time with no recording. `reasons`: what the agent reported for it (`idle`, `locked`,
    `capture_blocked`; none: the agent said nothing, so it was silent or offline); `kind` the
    first of them or `silent`; `detail` why capture was blocked, when a device still says;
    `label` all of it in words."""

    start: Time
    end: Time
    kind: GapKind
    reasons: list[str]
    detail: str | None
    label: str


class DaySegment(Model):
    seq: Seq
    started_at: Time
    duration_ms: Annotated[int, Meta(ge=0)]
    codec: str | None = None  # RFC 6381, as its agent declared it (None: an older one, H.264)


class DayRecording(Model):
    """A recording with time on the day; `segments` its verified ones on the day, in order
    (a player asks a view URL for each just before it plays)."""

    recording_id: Id
    state: str
    started_at: Time
    finished_at: Time | None
    segments: list[DaySegment]


class EmployeeDay(Model):
    """`day` cut in `zone` as [`start`, `end`); `days` every day with recordings, newest
    first; `live`: a recording of the day is still in progress and its agent is heard from
    (not silent, not revoked)."""

    user_id: Id
    email: str
    day: str
    zone: str
    start: Time
    end: Time
    live: bool
    days: list[str]
    spans: list[DaySpan]
    gaps: list[DayGap]
    recordings: list[DayRecording]
