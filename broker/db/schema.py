"""The broker's tables (SQLAlchemy Core). Migrations in `broker/migrations` create them.

Every table that holds tenant data has a `tenant_id` column; queries reach it only through
`broker.db.scope.TenantScope`, which adds the tenant filter in one place.

A foreign key from one tenant's table to another's carries the tenant too (`tenant_link`,
migration 0008): `(tenant_id, recording_id) REFERENCES recordings (tenant_id, id)`, so the
database itself refuses a row that names another tenant's row. The row-level security of
0007 cannot: foreign-key checks bypass it (and SQLite has none).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)


def tenant_key(table: str) -> UniqueConstraint:
    """UNIQUE (tenant_id, id): what a `tenant_link` to `table` points at (`id` alone is unique
    already; a composite foreign key needs the pair declared unique)."""
    return UniqueConstraint("tenant_id", "id", name=f"uq_{table}_tenant_id")


def tenant_link(table: str, column: str, parent: str) -> ForeignKeyConstraint:
    """`table.column` names a row of `parent` of the row's own tenant, checked by the database.

    Named as the plain foreign key it replaced (0008), which the naming convention would
    not do: its first column is `tenant_id`, so a table's two links to `users` would clash.
    """
    return ForeignKeyConstraint(
        ["tenant_id", column],
        [f"{parent}.tenant_id", f"{parent}.id"],
        name=f"fk_{table}_{column}_{parent}",
    )


tenants = Table(
    "tenants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # 0010: devices not revoked a person may have (null: BUCKETREEL_DEVICE_CAP).
    Column("device_cap", Integer, nullable=True),
    # 0012: the IANA zone the tenant's pages cut days in (null: the viewer's, else UTC).
    Column("time_zone", String(64), nullable=True),
)

users = Table(
    "users",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("role", String(20), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("session_version", Integer, nullable=False, default=1),
    Column("created_at", UTCDateTime(), nullable=False),
    # TOTP (RFC 6238): the secret sealed (AD: tenant and user), and the last time step
    # accepted, so a code works once, ever.
    Column("totp_sealed", LargeBinary, nullable=True),
    Column("totp_kek_version", String(8), nullable=True),
    Column("totp_last_step", BigInteger, nullable=True),
    Column("totp_enrolled_at", UTCDateTime(), nullable=True),
    # 0010: this person's own device cap (null: the tenant's); failed passwords since the
    # last full sign-in, shown at the next one.
    Column("device_cap", Integer, nullable=True),
    Column("failed_logins", Integer, nullable=False, server_default="0"),
    Column("failed_login_at", UTCDateTime(), nullable=True),
    # 0012: "active" | "invited" (no password yet) | "deactivated"; the last full sign-in;
    # an admin's 2FA reset not yet followed by re-enrolment.
    Column("state", String(12), nullable=False, server_default="active"),
    Column("last_sign_in_at", UTCDateTime(), nullable=True),
    Column("mfa_reset_at", UTCDateTime(), nullable=True),
    # 0013: the name the person goes by, shown beside the email (null: the email alone).
    Column("display_name", String(200), nullable=True),
    UniqueConstraint("tenant_id", "email", name="uq_users_tenant_email"),
    tenant_key("users"),
)

mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", ID, nullable=False),
    Column("challenge_hash", String(64), nullable=False, unique=True),
    Column("kind", String(10), nullable=False),  # "totp" or "enroll"
    # For "enroll": the new TOTP secret, sealed exactly as it will sit on the user row.
    Column("pending_sealed", LargeBinary, nullable=True),
    Column("pending_kek_version", String(8), nullable=True),
    Column("failures", Integer, nullable=False, default=0),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    tenant_link("mfa_challenges", "user_id", "users"),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", ID, nullable=False, index=True),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    tenant_link("recovery_codes", "user_id", "users"),
)

user_sessions = Table(
    "user_sessions",
    metadata,
    Column("id", ID, primary_key=True),  # also the refresh-token family
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", ID, nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    tenant_link("user_sessions", "user_id", "users"),
    tenant_key("user_sessions"),
)

user_refresh_tokens = Table(
    "user_refresh_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("session_id", ID, nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    tenant_link("user_refresh_tokens", "session_id", "user_sessions"),
)

manager_assignments = Table(
    "manager_assignments",
    metadata,
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("manager_id", ID, primary_key=True),
    Column("employee_id", ID, primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    tenant_link("manager_assignments", "manager_id", "users"),
    tenant_link("manager_assignments", "employee_id", "users"),
)

# Failed login attempts, keyed by an HMAC of the account or of the client address (never the
# address itself). Not tenant data: the limiter counts before any tenant is trusted.
login_failures = Table(
    "login_failures",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("key_hash", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Index("ix_login_failures_key_at", "key_hash", "at"),
)

enrollment_codes = Table(
    "enrollment_codes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", ID, nullable=False),
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    # 0012: enrolls up to max_uses devices (1: one-time); withdrawn by an admin; its label.
    Column("max_uses", Integer, nullable=False, server_default="1"),
    Column("uses", Integer, nullable=False, server_default="0"),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("label", String(200), nullable=True),
    tenant_link("enrollment_codes", "user_id", "users"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", ID, nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    # 0004: the device's Ed25519 public key (base64), registered at enrollment, verifying
    # its segments' chain-of-custody records; and its last heartbeat (JSON) with its interval.
    Column("public_key", String(64), nullable=True),
    Column("last_status", Text, nullable=True),
    Column("heartbeat_interval", Integer, nullable=True),
    tenant_link("devices", "user_id", "users"),
    tenant_key("devices"),
)

device_refresh_tokens = Table(
    "device_refresh_tokens",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("device_id", ID, nullable=False),
    Column("family_id", ID, nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    tenant_link("device_refresh_tokens", "device_id", "devices"),
)

storage_configs = Table(
    "storage_configs",
    metadata,
    Column("tenant_id", ID, ForeignKey("tenants.id"), primary_key=True),
    Column("bucket", String(63), nullable=False),
    Column("region", String(40), nullable=False),
    Column("endpoint_url", String(500), nullable=True),
    Column("prefix", String(200), nullable=False, default=""),
    # Static keys: the access key id and the sealed secret (AD: tenant and credential
    # version). Role option: all three are NULL and `role_arn` is set (migration 0003).
    Column("access_key_id", String(128), nullable=True),
    Column("secret_sealed", LargeBinary, nullable=True),
    Column("kek_version", String(8), nullable=True),
    Column("credential_version", Integer, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("auth_mode", String(8), nullable=False, server_default="keys"),  # "keys" | "role"
    Column("role_arn", String(2048), nullable=True),
)

# Per tenant, independent of the storage row (an admin needs the external ID before the role
# exists): the role option's external ID, whether the broker's access works, and the last
# self-check. `canary_key` is an object the self-check created, known to exist: a HeadObject
# on it tells "credentials revoked" (403) from "no such object" without a list right.
storage_access = Table(
    "storage_access",
    metadata,
    Column("tenant_id", ID, ForeignKey("tenants.id"), primary_key=True),
    Column("external_id", String(64), nullable=False),
    Column("state", String(20), nullable=False),  # "ok" | "access_revoked"
    Column("state_reason", String(300), nullable=True),
    Column("state_changed_at", UTCDateTime(), nullable=True),
    Column("canary_key", String(1024), nullable=True),
    Column("checked_at", UTCDateTime(), nullable=True),
    Column("check_result", Text, nullable=True),  # JSON of the last self-check
    Column("created_at", UTCDateTime(), nullable=False),
)

recordings = Table(
    "recordings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("user_id", ID, nullable=False),
    Column("device_id", ID, nullable=True),
    Column("state", String(20), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index("ix_recordings_tenant_user", "tenant_id", "user_id"),
    tenant_link("recordings", "user_id", "users"),
    tenant_link("recordings", "device_id", "devices"),
    tenant_key("recordings"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("recording_id", ID, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("object_key", String(1024), nullable=False),
    Column("state", String(20), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("md5", String(32), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("verified_at", UTCDateTime(), nullable=True),
    # 0004: the chain-of-custody record (shared.custody): the previous record's hash, this
    # record's hash and the device's signature of it.
    Column("record_prev", String(64), nullable=True),
    Column("record_hash", String(64), nullable=True),
    Column("record_signature", String(100), nullable=True),
    # 0009: the record's format (shared.custody V1/V2); NULL on older rows: v1 when signed
    Column("record_version", Integer, nullable=True),
    # 0014: the codec its agent declared (RFC 6381, shared.wire.Codec); NULL: an older agent,
    # whose segments are all H.264
    Column("codec", String(64), nullable=True),
    UniqueConstraint("recording_id", "seq", name="uq_segments_recording_seq"),
    tenant_link("segments", "recording_id", "recordings"),
    tenant_key("segments"),
)

# 0004: segments of a recording its agent reports will never arrive, and why.
recording_gaps = Table(
    "recording_gaps",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("recording_id", ID, nullable=False, index=True),
    Column("seqs", Text, nullable=False),  # JSON list of ints
    Column("reason", String(20), nullable=False),
    Column("reported_at", UTCDateTime(), nullable=False),
    # 0006: a pause's time range (reasons idle and locked)
    Column("gap_from", UTCDateTime(), nullable=True),
    Column("gap_to", UTCDateTime(), nullable=True),
    # 0009: the device's signature of the report (shared.custody.GapRecord), when it sent one
    Column("signature", String(100), nullable=True),
    tenant_link("recording_gaps", "recording_id", "recordings"),
)

# 0006: the recording policy an admin sets for the tenant's agents, pushed to them in the
# heartbeat reply; a NULL column leaves that setting to each agent's own configuration.
device_policies = Table(
    "device_policies",
    metadata,
    Column("tenant_id", ID, ForeignKey("tenants.id"), primary_key=True),
    Column("fps", Float, nullable=True),
    Column("segment_seconds", Float, nullable=True),
    Column("idle_seconds", Integer, nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("quality", String(20), nullable=True),  # a shared.wire.QualityLevel
)

upload_grants = Table(
    "upload_grants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("segment_id", ID, nullable=False, index=True),
    Column("credential_version", Integer, nullable=False),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    tenant_link("upload_grants", "segment_id", "segments"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(200), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("client_hmac", String(64), nullable=True),
    # HMAC of `hash` under the audit key of version `mac_key` (broker.audit.log); 0011
    Column("mac", String(64), nullable=True),
    Column("mac_key", String(16), nullable=True),
    UniqueConstraint("tenant_id", "seq", name="uq_audit_log_tenant_seq"),
)

# 0015: what the broker still has to write to the tenant's bucket beside the recordings
# (`broker.bucket`): a device record, a recording's manifest, an audit anchor. A row is
# added in the transaction of the event, and delivered by the outbox flusher with no
# transaction open; `object_key` and `body` are fixed at the first attempt, so every retry
# writes the same bytes (write-once: a repeat is refused by the bucket and counts as done).
bucket_outbox = Table(
    "bucket_outbox",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tenant_id", ID, ForeignKey("tenants.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # "device" | "manifest" | "anchor"
    Column("ref", String(100), nullable=False),  # device id, recording id, audit seq
    Column("object_key", String(1024), nullable=True),
    Column("body", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("delivered_at", UTCDateTime(), nullable=True),
    Column("last_error", String(300), nullable=True),
    UniqueConstraint("tenant_id", "kind", "ref", name="uq_bucket_outbox_tenant_id"),
)
