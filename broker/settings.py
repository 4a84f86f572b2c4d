"""Broker settings: one frozen object, filled from environment variables.

Secrets are never given defaults. The broker refuses to start when one is missing or too
weak and names it; `bucketreel-broker gen-secrets` prints a complete set.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from broker.errors import ConfigError

PREFIX = "BUCKETREEL_"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///bucketreel-broker.db"
MIN_SECRET_CHARS = 32
MASTER_KEY_BYTES = 32
SIGNING_KEY_BYTES = 32  # an Ed25519 seed
_MASTER_KEY_RE = re.compile(r"^v(\d{1,4}):(.+)$")


class Secret:
    """A secret string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterKeys:
    """Versioned key-encryption keys; the highest version seals, every version unseals."""

    keys: Mapping[str, bytes] = field(repr=False)
    current: str

    def get(self, version: str) -> bytes:
        try:
            return self.keys[version]
        except KeyError:
            raise ConfigError(
                f"master key {version} is not in {PREFIX}MASTER_KEYS; it is needed to unseal "
                "data sealed under it"
            ) from None


@dataclass(frozen=True, slots=True)
class Number:
    """A whole-number setting: its default and the range `from_env` accepts."""

    default: int
    lo: int
    hi: int


# Every whole-number setting, declared once: the field of `Settings` (its default comes from
# here), `BUCKETREEL_<NAME upper-cased>` in the environment, and the README's settings table
# (tests/broker/test_settings_table.py holds the README to this).
NUMBERS: dict[str, Number] = {
    # Access tokens shorter than a minute only in development mode (tests of refreshing).
    "access_token_ttl": Number(900, 60, 900),
    "device_refresh_ttl": Number(90 * 86_400, 3600, 365 * 86_400),
    "upload_url_ttl": Number(300, 30, 300),
    "view_url_ttl": Number(60, 10, 120),
    "enrollment_code_ttl": Number(86_400, 300, 30 * 86_400),
    "max_body_bytes": Number(64 * 1024, 1024, 1024 * 1024),
    # Identity: Argon2id parameters (never below OWASP's m=19456 KiB, t=2, p=1).
    "argon2_time_cost": Number(2, 2, 20),
    "argon2_memory_kib": Number(19_456, 19_456, 4 * 1024 * 1024),
    "argon2_parallelism": Number(1, 1, 16),
    "user_refresh_ttl": Number(14 * 86_400, 900, 90 * 86_400),
    "mfa_challenge_ttl": Number(300, 30, 300),
    # Browser (cookie) sessions: the refresh cookie's lifetime, i.e. how long a session lives
    # without a refresh (no page open), and the absolute lifetime from sign-in.
    "browser_idle_timeout": Number(1800, 60, 86_400),
    "browser_session_max_age": Number(12 * 3600, 300, 7 * 86_400),
    # Seconds an API (bearer) session lives from sign-in however often it is refreshed.
    "user_session_max_age": Number(30 * 86_400, 3600, 365 * 86_400),
    # Failed logins (password or code) allowed per window, per account and per client address.
    "login_window": Number(900, 10, 86_400),
    "login_max_failures": Number(5, 1, 100),
    "login_client_max_failures": Number(50, 1, 10_000),
    # Per-device request budgets on the device API, per broker process (token buckets; see
    # `broker.devices.ratelimit` for why these defaults): every call, and the stricter one for
    # calls that add rows without bound (recording starts, gap reports). Floors keep a
    # legitimate agent unhindered: 240 calls/min is above the 180 an agent makes at the
    # shortest segments and heartbeats (1 s each), so a spooled backlog always drains; a burst
    # of 20 passes a segment's calls, a heartbeat and a run's start and end back to back;
    # 30 creates/hour and a burst of 10 pass a run's start and gap reports (about 6) and the
    # pauses of the default idle time.
    "device_calls_per_minute": Number(600, 240, 60_000),
    "device_call_burst": Number(600, 20, 100_000),
    "device_creates_per_hour": Number(120, 30, 36_000),
    "device_create_burst": Number(60, 10, 10_000),
    # Devices not revoked a person may have (a tenant's or a person's own cap overrides it:
    # `broker.devices.caps`); creates shared by a person's and a tenant's devices; device
    # registrations by login per person and per tenant (per hour; bursts are half of these).
    "device_cap": Number(3, 1, 10_000),
    "person_creates_per_hour": Number(240, 30, 360_000),
    "tenant_creates_per_hour": Number(36_000, 60, 36_000_000),
    "person_registrations_per_hour": Number(10, 2, 3600),
    "tenant_registrations_per_hour": Number(200, 2, 360_000),
    # Seconds an agent's declared times may lie ahead of the broker's clock (or before its
    # recording's start): `broker.recordings.bounds`.
    "clock_skew": Number(300, 5, 3600),
    # Seconds between the broker's checks that each tenant's storage credentials still work
    # (a HeadObject of the self-check's object, `broker.storage.monitor`): a key deactivated
    # in the customer's cloud shows as "access revoked" on the admin pages within this.
    "storage_check_interval": Number(30, 2, 3600),
    # On SIGTERM (`broker.web.serving`): seconds the replica still serves while `/healthz`
    # answers 503, so a load balancer's check takes it out of rotation first; then seconds
    # the requests in flight get to finish before the process exits.
    "drain_seconds": Number(0, 0, 300),
    "shutdown_timeout": Number(10, 1, 600),
}
DEV_MODE_MIN_ACCESS_TOKEN_TTL = 5
# The other variables the broker reads (secrets, flags, text), for the README's table test.
OTHER_VARIABLES = (
    "DATABASE_URL", "SECRET_KEY", "SECRET_KEY_PREVIOUS", "HMAC_KEY", "MASTER_KEYS",
    "MIGRATE_ON_START", "LOG_LEVEL", "CLIENT_ADDRESS_HEADER", "BEHIND_TLS", "DEV_MODE",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "STS_ENDPOINT_URL", "ALLOWED_ENDPOINT_HOSTS",
    "SIGNING_KEY", "BROKER_ARN",
)


def _default(name: str) -> int:
    return NUMBERS[name].default


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    secret_key: Secret
    secret_key_previous: Secret | None = None
    hmac_key: Secret
    master_keys: MasterKeys
    access_token_ttl: int = _default("access_token_ttl")
    device_refresh_ttl: int = _default("device_refresh_ttl")
    upload_url_ttl: int = _default("upload_url_ttl")
    view_url_ttl: int = _default("view_url_ttl")
    enrollment_code_ttl: int = _default("enrollment_code_ttl")
    max_body_bytes: int = _default("max_body_bytes")
    migrate_on_start: bool = True
    log_level: str = "INFO"
    argon2_time_cost: int = _default("argon2_time_cost")
    argon2_memory_kib: int = _default("argon2_memory_kib")
    argon2_parallelism: int = _default("argon2_parallelism")
    user_refresh_ttl: int = _default("user_refresh_ttl")
    mfa_challenge_ttl: int = _default("mfa_challenge_ttl")
    browser_idle_timeout: int = _default("browser_idle_timeout")
    browser_session_max_age: int = _default("browser_session_max_age")
    user_session_max_age: int = _default("user_session_max_age")
    login_window: int = _default("login_window")
    login_max_failures: int = _default("login_max_failures")
    login_client_max_failures: int = _default("login_client_max_failures")
    device_calls_per_minute: int = _default("device_calls_per_minute")
    device_call_burst: int = _default("device_call_burst")
    device_creates_per_hour: int = _default("device_creates_per_hour")
    device_create_burst: int = _default("device_create_burst")
    device_cap: int = _default("device_cap")
    person_creates_per_hour: int = _default("person_creates_per_hour")
    tenant_creates_per_hour: int = _default("tenant_creates_per_hour")
    person_registrations_per_hour: int = _default("person_registrations_per_hour")
    tenant_registrations_per_hour: int = _default("tenant_registrations_per_hour")
    clock_skew: int = _default("clock_skew")
    storage_check_interval: int = _default("storage_check_interval")
    drain_seconds: int = _default("drain_seconds")
    shutdown_timeout: int = _default("shutdown_timeout")
    # Header a trusted reverse proxy sets to the client address (its last value is used);
    # None: the peer address of the connection.
    client_address_header: str | None = None
    # The public URL is https (TLS ends at a proxy): send HSTS.
    behind_tls: bool = False
    # Development only: cookies lose `Secure` for requests to http://localhost.
    dev_mode: bool = False
    # Role option: the broker's own AWS credentials for STS AssumeRole (both or neither; with
    # neither, boto3's default chain), and an STS endpoint other than AWS's (tests).
    aws_access_key_id: str | None = None
    aws_secret_access_key: Secret | None = None
    sts_endpoint_url: str | None = None
    # The ARN of the broker's own AWS identity, the one that assumes tenants' roles: the
    # trust policy the Storage page and `iam-policy` show names it (None: a placeholder).
    broker_arn: str | None = None
    # Tenants' custom S3 endpoints the operator allows although they are plain http or resolve
    # to a non-public address (`broker.storage.endpoint`): "host" or "host:port" entries.
    allowed_endpoint_hosts: str = ""
    # The seed (base64 of 32 bytes) of the broker's Ed25519 key that signs what it writes to
    # the bucket (`broker.bucket.signing`); None: derived from the newest master key.
    signing_key: Secret | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def secret(name: str, *, required: bool = True) -> Secret | None:
            value = env.get(PREFIX + name, "")
            if not value:
                if required:
                    problems.append(f"{PREFIX}{name} is missing")
                return None
            if len(value) < MIN_SECRET_CHARS:
                problems.append(
                    f"{PREFIX}{name} is too short ({len(value)} characters; at least "
                    f"{MIN_SECRET_CHARS} random characters are required)"
                )
                return None
            return Secret(value)

        def number(name: str, default: int, lo: int, hi: int) -> int:
            raw = env.get(PREFIX + name)
            if raw is None or raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{PREFIX}{name} must be a whole number, not {raw!r}")
                return default
            if not lo <= value <= hi:
                problems.append(f"{PREFIX}{name} must be between {lo} and {hi}, not {value}")
            return value

        def flag(name: str) -> bool:
            raw = env.get(PREFIX + name, "").lower()
            if raw not in {"", "0", "1", "true", "false", "yes", "no"}:
                problems.append(f"{PREFIX}{name} must be 1 or 0, not {raw!r}")
            return raw in {"1", "true", "yes"}

        secret_key = secret("SECRET_KEY")
        previous = secret("SECRET_KEY_PREVIOUS", required=False)
        hmac_key = secret("HMAC_KEY")
        master_keys = _parse_master_keys(env.get(PREFIX + "MASTER_KEYS", ""), problems)
        if secret_key and previous and secret_key == previous:
            problems.append(f"{PREFIX}SECRET_KEY_PREVIOUS must differ from {PREFIX}SECRET_KEY")
        if secret_key and hmac_key and secret_key == hmac_key:
            problems.append(f"{PREFIX}SECRET_KEY and {PREFIX}HMAC_KEY must differ")
        dev_mode = flag("DEV_MODE")
        numbers: dict[str, int] = {}
        for name, spec in NUMBERS.items():
            lo = spec.lo
            if name == "access_token_ttl" and dev_mode:
                lo = DEV_MODE_MIN_ACCESS_TOKEN_TTL  # tests of refreshing
            numbers[name] = number(name.upper(), spec.default, lo, spec.hi)
        access_ttl, browser_idle = numbers["access_token_ttl"], numbers["browser_idle_timeout"]
        if browser_idle <= access_ttl:
            problems.append(
                f"{PREFIX}BROWSER_IDLE_TIMEOUT must be longer than {PREFIX}ACCESS_TOKEN_TTL "
                "(a page refreshes its session shortly before the access token expires)"
            )
        settings_kwargs: dict[str, object] = {
            **numbers,
            "database_url": env.get(PREFIX + "DATABASE_URL") or DEFAULT_DATABASE_URL,
            "migrate_on_start": env.get(PREFIX + "MIGRATE_ON_START", "1").lower()
            not in {"0", "false", "no"},
            "log_level": env.get(PREFIX + "LOG_LEVEL", "INFO").upper(),
            "client_address_header": env.get(PREFIX + "CLIENT_ADDRESS_HEADER") or None,
            "behind_tls": flag("BEHIND_TLS"),
            "dev_mode": dev_mode,
        }
        aws_key_id = env.get(PREFIX + "AWS_ACCESS_KEY_ID") or None
        aws_secret_raw = env.get(PREFIX + "AWS_SECRET_ACCESS_KEY") or None
        if (aws_key_id is None) != (aws_secret_raw is None):
            problems.append(
                f"{PREFIX}AWS_ACCESS_KEY_ID and {PREFIX}AWS_SECRET_ACCESS_KEY go together"
            )
        settings_kwargs["aws_access_key_id"] = aws_key_id
        settings_kwargs["aws_secret_access_key"] = (
            Secret(aws_secret_raw) if aws_secret_raw else None
        )
        settings_kwargs["sts_endpoint_url"] = env.get(PREFIX + "STS_ENDPOINT_URL") or None
        broker_arn = env.get(PREFIX + "BROKER_ARN", "").strip() or None
        if broker_arn is not None and not _BROKER_ARN_RE.match(broker_arn):
            problems.append(
                f"{PREFIX}BROKER_ARN must be an IAM user, role or account ARN "
                "(arn:aws:iam::123456789012:role/bucketreel-broker), not "
                f"{broker_arn[:100]!r}"
            )
            broker_arn = None
        settings_kwargs["broker_arn"] = broker_arn
        allowed_hosts = env.get(PREFIX + "ALLOWED_ENDPOINT_HOSTS", "")
        bad_hosts = _bad_host_entries(allowed_hosts)
        if bad_hosts:
            problems.append(
                f"{PREFIX}ALLOWED_ENDPOINT_HOSTS holds entries that are not host[:port]: "
                + ", ".join(bad_hosts)
            )
        settings_kwargs["allowed_endpoint_hosts"] = allowed_hosts
        settings_kwargs["signing_key"] = _parse_signing_key(
            env.get(PREFIX + "SIGNING_KEY", ""), problems
        )
        if problems or secret_key is None or hmac_key is None or master_keys is None:
            raise ConfigError(
                "refusing to start: "
                + "; ".join(problems)
                + ". Run `bucketreel-broker gen-secrets > broker.env` to make a complete set."
            )
        return cls(
            secret_key=secret_key,
            secret_key_previous=previous,
            hmac_key=hmac_key,
            master_keys=master_keys,
            **settings_kwargs,  # type: ignore[arg-type]
        )


# An IAM user, role or account (or an STS assumed role) of a real account: 12 digits.
_BROKER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:(iam|sts)::\d{12}:[\w+=,.@/-]{1,1900}$")


def parse_allowed_hosts(raw: str) -> frozenset[str]:
    """`BUCKETREEL_ALLOWED_ENDPOINT_HOSTS`: comma-separated `host`, `host:port`, `[v6]:port`,
    lower case; a bare IPv6 address is bracketed as URLs write it."""
    entries: set[str] = set()
    for item in (part.strip().lower() for part in raw.split(",")):
        if not item:
            continue
        if item.startswith("[") or item.count(":") <= 1:
            entries.add(item)
        else:
            entries.add(f"[{item}]")
    return frozenset(entries)


def _bad_host_entries(raw: str) -> list[str]:
    bad = []
    for item in parse_allowed_hosts(raw):
        try:
            parts = urlsplit(f"http://{item}")
            port = parts.port
        except ValueError:
            bad.append(item)
            continue
        if not parts.hostname or parts.path or port == 0:
            bad.append(item)
    return sorted(bad)


def _parse_master_keys(raw: str, problems: list[str]) -> MasterKeys | None:
    if not raw:
        problems.append(f"{PREFIX}MASTER_KEYS is missing")
        return None
    keys: dict[str, bytes] = {}
    for item in raw.split(","):
        match = _MASTER_KEY_RE.match(item.strip())
        if not match:
            problems.append(f"{PREFIX}MASTER_KEYS entries must look like v1:<base64 of 32 bytes>")
            return None
        version = f"v{int(match.group(1))}"
        try:
            key = base64.b64decode(match.group(2), validate=True)
        except binascii.Error:
            key = b""
        if len(key) != MASTER_KEY_BYTES:
            problems.append(f"{PREFIX}MASTER_KEYS {version} must be the base64 of 32 random bytes")
            return None
        keys[version] = key
    current = max(keys, key=lambda v: int(v[1:]))
    return MasterKeys(keys=keys, current=current)


def _parse_signing_key(raw: str, problems: list[str]) -> Secret | None:
    if not raw:
        return None
    try:
        seed = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != SIGNING_KEY_BYTES:
        problems.append(f"{PREFIX}SIGNING_KEY must be the base64 of 32 random bytes")
        return None
    return Secret(raw)


def generate_secrets() -> dict[str, str]:
    """A complete, fresh set of the broker's secrets, as environment variables."""
    master = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()
    return {
        PREFIX + "SECRET_KEY": secrets.token_urlsafe(48),
        PREFIX + "HMAC_KEY": secrets.token_urlsafe(48),
        PREFIX + "MASTER_KEYS": f"v1:{master}",
        PREFIX + "SIGNING_KEY": base64.b64encode(secrets.token_bytes(SIGNING_KEY_BYTES)).decode(),
    }


def load_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines from a file only its owner can read (as gen-secrets writes them)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"env file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"env file {path}, line {number}: expected KEY=value")
        values[key.strip()] = value.strip().strip("'\"")
    return values
