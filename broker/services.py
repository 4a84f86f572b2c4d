"""The plain services, wired from settings: the app and the admin commands share this."""

from __future__ import annotations

from broker.auth.devices import DeviceAuth
from broker.auth.tokens import TokenSigner
from broker.clock import Clock
from broker.db.database import Database
from broker.recordings.service import RecordingService
from broker.settings import Settings
from broker.storage.s3 import BucketClients


def build_services(
    settings: Settings, db: Database, clock: Clock
) -> tuple[TokenSigner, DeviceAuth, RecordingService]:
    """The plain services, wired; the CLI's admin commands use the same ones."""
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
    )
    recordings = RecordingService(
        db=db,
        keys=settings.master_keys,
        buckets=BucketClients(),
        upload_ttl=settings.upload_url_ttl,
        view_ttl=settings.view_url_ttl,
        clock=clock,
    )
    return signer, devices, recordings
