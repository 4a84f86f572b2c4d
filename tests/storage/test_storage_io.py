"""The storage pool's limits: a deadline per call, a cap per tenant that counts a thread
until it really returns (or its call never ran), one self-check per tenant, few per broker."""

from __future__ import annotations

import asyncio
import threading

import pytest

from broker.storage.io import StorageBusy, StorageIO, StorageTimeout


def test_calls_are_bounded_per_tenant_and_a_call_that_never_ran_frees_its_place() -> None:
    io = StorageIO(workers=1, per_tenant=1)
    stuck = threading.Event()

    async def scenario() -> None:
        with pytest.raises(StorageTimeout):
            await io.run("a", stuck.wait, 30, deadline=0.2)  # holds the only thread
        with pytest.raises(StorageBusy) as busy:
            await io.run("a", lambda: 1, deadline=1)  # its thread has not returned yet
        assert busy.value.retry_after >= 1
        with pytest.raises(StorageTimeout):
            await io.run("b", lambda: 1, deadline=0.2)  # queued behind it, never ran
        stuck.set()
        assert await io.run("b", lambda: 2, deadline=5) == 2  # "b" kept no phantom call
        assert await io.run("a", lambda: 3, deadline=5) == 3

    try:
        asyncio.run(scenario())
    finally:
        stuck.set()
        io.close()


def test_one_self_check_per_tenant_and_few_per_broker() -> None:
    io = StorageIO(selfchecks=2)

    async def scenario() -> None:
        async with io.selfcheck_slot("a"):
            with pytest.raises(StorageBusy, match="this tenant"):
                async with io.selfcheck_slot("a"):
                    pass
            async with io.selfcheck_slot("b"):
                with pytest.raises(StorageBusy, match="as many"):
                    async with io.selfcheck_slot("c"):
                        pass
        async with io.selfcheck_slot("c"):
            pass

    try:
        asyncio.run(scenario())
    finally:
        io.close()
