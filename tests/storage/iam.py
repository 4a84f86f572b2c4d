"""moto's server with IAM enforced (`INITIAL_NO_AUTH_ACTION_COUNT=0`): every request must be
signed by a key moto's IAM knows, and is allowed only as the principal's policies say.

Bootstrap: moto's own control endpoint (`/moto-api/reset-auth`) lifts enforcement for the few
calls that create the tests' administrator, then turns it back on for everything after.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import urllib3

from tests.support.s3 import S3Endpoint, run_moto

ALLOW_ALL = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


@dataclass(frozen=True)
class Principal:
    name: str
    arn: str
    access_key_id: str
    secret_access_key: str

    def endpoint(self, base: S3Endpoint) -> S3Endpoint:
        return S3Endpoint(base.url, base.region, self.access_key_id, self.secret_access_key)


@dataclass(frozen=True)
class IamMoto:
    endpoint: S3Endpoint  # signed with the tests' administrator
    admin: Principal

    def client(self, service: str, who: Principal | None = None) -> Any:
        who = who or self.admin
        return boto3.session.Session().client(
            service, endpoint_url=self.endpoint.url, region_name=self.endpoint.region,
            aws_access_key_id=who.access_key_id, aws_secret_access_key=who.secret_access_key,
        )

    def user(self, policy: dict[str, Any], name: str | None = None) -> Principal:
        """An IAM user with this inline policy and an access key."""
        name = name or f"user-{secrets.token_hex(4)}"
        return _user(self.client("iam"), name, policy)

    def role(self, trust: dict[str, Any], policy: dict[str, Any]) -> str:
        """A role with this trust policy and inline permissions; returns its ARN."""
        iam = self.client("iam")
        name = f"role-{secrets.token_hex(4)}"
        arn: str = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust)
        )["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
        return arn


def _user(iam: Any, name: str, policy: dict[str, Any]) -> Principal:
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return Principal(name, arn, key["AccessKeyId"], key["SecretAccessKey"])


def _reset_auth(url: str, count: str) -> None:
    reply = urllib3.PoolManager().request("POST", f"{url}/moto-api/reset-auth", body=count)
    assert reply.status == 200, reply.data


@contextmanager
def iam_moto(log_dir: Path) -> Iterator[IamMoto]:
    with run_moto(extra_env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"}, log_dir=log_dir) as base:
        _reset_auth(base.url, "inf")  # only while the administrator is made
        iam = boto3.session.Session().client(
            "iam", endpoint_url=base.url, region_name=base.region,
            aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap",
        )
        admin = _user(iam, "tests-admin", ALLOW_ALL)
        _reset_auth(base.url, "0")
        yield IamMoto(admin.endpoint(base), admin)
