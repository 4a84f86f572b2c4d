"""The plain services, wired from settings: the app and the admin commands share this."""

from __future__ import annotations

from dataclasses import dataclass

from broker.accounts.organisation import Organisation
from broker.accounts.passwords import Passwords
from broker.accounts.people import People
from broker.accounts.service import Accounts
from broker.auth.invites import Invitations
from broker.auth.login import LoginService
from broker.auth.ratelimit import LoginLimiter
from broker.auth.sessions import UserSessions
from broker.auth.tokens import TokenSigner
from broker.bucket.flusher import Flusher
from broker.bucket.outbox import Wake
from broker.bucket.signing import broker_signer
from broker.clock import Clock
from broker.db.database import Database
from broker.devices.enrollment import DeviceAuth
from broker.devices.ratelimit import (
    CALLS,
    CREATES,
    PERSON_CREATES,
    PERSON_REGISTRATIONS,
    TENANT_CREATES,
    TENANT_REGISTRATIONS,
    Budget,
    DeviceLimits,
)
from broker.recordings.service import RecordingService
from broker.recordings.viewing import ViewingService
from broker.sealing import ChainKeys
from broker.settings import Settings
from broker.storage.credentials import BrokerIdentity
from broker.storage.endpoint import EndpointPolicy
from broker.storage.s3 import BucketClients
from broker.storage.service import StorageAccess


@dataclass(frozen=True, slots=True)
class Services:
    signer: TokenSigner
    accounts: Accounts
    organisation: Organisation
    people: People
    invitations: Invitations
    devices: DeviceAuth
    recordings: RecordingService
    passwords: Passwords
    sessions: UserSessions
    login: LoginService
    viewing: ViewingService
    storage: StorageAccess
    device_limits: DeviceLimits
    settings: Settings
    db: Database
    clock: Clock
    bucket: Flusher  # the bucket outbox's flusher (`broker.app` runs it)


def build_services(settings: Settings, db: Database, clock: Clock) -> Services:
    """The plain services, wired; the CLI's admin commands use the same ones."""
    if db.audit_keys is None:  # the services write the audit chain: its keys, from settings
        db.audit_keys = ChainKeys.from_master(settings.master_keys)
    signer = TokenSigner(
        current=settings.secret_key,
        previous=settings.secret_key_previous,
        ttl=settings.access_token_ttl,
        clock=clock,
    )
    devices = DeviceAuth(
        db=db,
        signer=signer,
        hmac_key=settings.hmac_key,
        refresh_ttl=settings.device_refresh_ttl,
        code_ttl=settings.enrollment_code_ttl,
        clock=clock,
        device_cap=settings.device_cap,
    )
    buckets = BucketClients(
        BrokerIdentity.from_settings(settings),
        EndpointPolicy.from_setting(
            settings.allowed_endpoint_hosts, dev_mode=settings.dev_mode
        ),
    )
    db.notices.subscribe(buckets.invalidate, buckets.forget_all)
    storage = StorageAccess(
        db=db, keys=settings.master_keys, buckets=buckets, clock=clock,
        broker_arn=settings.broker_arn,
    )
    wake = Wake()
    recordings = RecordingService(
        wake=wake,
        db=db,
        keys=settings.master_keys,
        buckets=buckets,
        upload_ttl=settings.upload_url_ttl,
        view_ttl=settings.view_url_ttl,
        clock=clock,
        storage=storage,
        clock_skew=settings.clock_skew,
    )
    passwords = Passwords(
        time_cost=settings.argon2_time_cost,
        memory_kib=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )
    sessions = UserSessions(
        db=db,
        signer=signer,
        hmac_key=settings.hmac_key,
        refresh_ttl=settings.user_refresh_ttl,
        clock=clock,
        browser_idle=settings.browser_idle_timeout,
        browser_max_age=settings.browser_session_max_age,
        max_age=settings.user_session_max_age,
    )
    limiter = LoginLimiter(
        hmac_key=settings.hmac_key,
        window=settings.login_window,
        account_limit=settings.login_max_failures,
        client_limit=settings.login_client_max_failures,
    )
    login = LoginService(
        db=db,
        passwords=passwords,
        limiter=limiter,
        sessions=sessions,
        keys=settings.master_keys,
        hmac_key=settings.hmac_key,
        challenge_ttl=settings.mfa_challenge_ttl,
        clock=clock,
    )
    viewing = ViewingService(db=db, recordings=recordings, clock=clock)
    return Services(
        signer=signer,
        accounts=Accounts(db=db, clock=clock),
        organisation=Organisation(db=db, clock=clock),
        people=People(db=db, clock=clock),
        invitations=Invitations(
            db=db, passwords=passwords, hmac_key=settings.hmac_key, clock=clock
        ),
        devices=devices,
        recordings=recordings,
        passwords=passwords,
        sessions=sessions,
        login=login,
        viewing=viewing,
        storage=storage,
        device_limits=device_limits(settings, db, clock),
        settings=settings,
        db=db,
        clock=clock,
        bucket=Flusher(
            db=db, keys=settings.master_keys, buckets=buckets,
            signer=broker_signer(settings), clock=clock, wake=wake,
        ),
    )


def device_limits(settings: Settings, db: Database, clock: Clock) -> DeviceLimits:
    """The device API's per-device budgets; in memory, so one per process (the app's)."""
    return DeviceLimits(
        db=db,
        calls=Budget.per_minute(
            CALLS, settings.device_calls_per_minute, settings.device_call_burst
        ),
        creates=Budget.per_hour(
            CREATES, settings.device_creates_per_hour, settings.device_create_burst
        ),
        person_creates=_half_burst(PERSON_CREATES, settings.person_creates_per_hour),
        tenant_creates=_half_burst(TENANT_CREATES, settings.tenant_creates_per_hour),
        person_registrations=_half_burst(
            PERSON_REGISTRATIONS, settings.person_registrations_per_hour
        ),
        tenant_registrations=_half_burst(
            TENANT_REGISTRATIONS, settings.tenant_registrations_per_hour
        ),
        clock=clock,
    )


def _half_burst(name: str, per_hour: int) -> Budget:
    return Budget.per_hour(name, per_hour, max(1, per_hour // 2))
