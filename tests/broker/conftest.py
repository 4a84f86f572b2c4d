from __future__ import annotations

import pytest

from tests.support.api import Api, Device, Tenant, enroll
from tests.support.broker import BrokerProcess


@pytest.fixture
def device(api: Api, broker: BrokerProcess, tenant: Tenant) -> Device:
    return enroll(api, broker, tenant)
