from __future__ import annotations

import pytest

from tests.support.api import Api, Device, Tenant, enroll, make_tenant
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint


@pytest.fixture(scope="module")
def api(broker: BrokerProcess) -> Api:
    return Api(broker.url)


@pytest.fixture(scope="module")
def tenant(broker: BrokerProcess, s3_endpoint: S3Endpoint) -> Tenant:
    return make_tenant(broker, s3_endpoint)


@pytest.fixture
def device(api: Api, broker: BrokerProcess, tenant: Tenant) -> Device:
    return enroll(api, broker, tenant)
