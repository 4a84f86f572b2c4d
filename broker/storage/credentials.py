"""Which credentials the broker signs a tenant's requests with.

- Static keys: the tenant's IAM access key, unsealed from the database.
- Role option: STS `AssumeRole` on the tenant's role ARN with the tenant's external ID, using
  the broker's own base credentials (`BUCKETREEL_AWS_ACCESS_KEY_ID` and
  `BUCKETREEL_AWS_SECRET_ACCESS_KEY`, or, when both are unset, boto3's default chain: the
  environment's `AWS_*`, a profile, or the instance/task role). Sessions last 15 minutes and
  are refreshed before they expire: a session is used for signing only while it has more than
  `MANDATORY_REFRESH` seconds left, longer than any URL the broker signs (≤ 300 s), so no URL
  outlives the session that signed it.

botocore's and STS's errors are translated here into the broker's storage errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError

from broker.errors import StorageUnavailable
from broker.settings import Secret, Settings
from broker.storage.config import ROLE, StorageConfig

SESSION_SECONDS = 900  # STS's minimum, and all the broker needs
ADVISORY_REFRESH = 8 * 60  # refresh when less than this is left (failure: keep the old one)
MANDATORY_REFRESH = 6 * 60  # never sign with less than this left
SESSION_NAME = "bucketreel-broker"


class StorageAccessDenied(StorageUnavailable):
    """The bucket (or STS) refused the broker's credentials: 403, revoked or not allowed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerIdentity:
    """The broker's own AWS credentials, used only to assume tenants' roles."""

    access_key_id: str | None = None
    secret_access_key: Secret | None = field(default=None, repr=False)
    sts_endpoint_url: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerIdentity:
        return cls(
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
            sts_endpoint_url=settings.sts_endpoint_url,
        )

    def sts_client(self, region: str) -> Any:
        kwargs: dict[str, Any] = {}
        if self.access_key_id and self.secret_access_key:
            kwargs = {
                "aws_access_key_id": self.access_key_id,
                "aws_secret_access_key": self.secret_access_key.reveal(),
            }
        return boto3.session.Session().client(
            "sts",
            region_name=region,
            endpoint_url=self.sts_endpoint_url,
            # Short: AssumeRole runs on the storage pool under a deadline (`broker.storage.io`).
            config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3,
                          read_timeout=5),
            **kwargs,
        )


def boto_session(config: StorageConfig, identity: BrokerIdentity) -> boto3.session.Session:
    """A boto3 session signing as the tenant's principal (static key or assumed role)."""
    if config.auth_mode != ROLE:
        if config.access_key_id is None or config.secret_access_key is None:
            raise StorageUnavailable("the tenant's storage has no access key")
        return boto3.session.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key.reveal(),
            region_name=config.region,
        )
    if config.role_arn is None or config.external_id is None:
        raise StorageUnavailable("the tenant's storage has no role ARN or external ID")
    sts = identity.sts_client(config.region)
    role_arn, external_id = config.role_arn, config.external_id

    def assume() -> dict[str, Any]:
        try:
            reply = sts.assume_role(
                RoleArn=role_arn, RoleSessionName=SESSION_NAME, ExternalId=external_id,
                DurationSeconds=SESSION_SECONDS,
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise StorageAccessDenied(
                f"STS refused to let the broker assume {role_arn}: {error.get('Code', '?')}; "
                "check the role's trust policy (principal and external ID)"
            ) from None
        except BotoCoreError as exc:
            raise StorageUnavailable(
                f"STS did not answer or the broker has no base credentials: {type(exc).__name__}"
            ) from None
        credentials = reply["Credentials"]
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    refreshable = RefreshableCredentials.create_from_metadata(
        metadata=assume(), refresh_using=assume, method="sts-assume-role",
        advisory_timeout=ADVISORY_REFRESH, mandatory_timeout=MANDATORY_REFRESH,
    )
    core = botocore.session.get_session()
    core._credentials = refreshable  # botocore's way to plug in credentials
    return boto3.session.Session(botocore_session=core, region_name=config.region)
