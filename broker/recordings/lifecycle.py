"""A recording's life: start (closing what a dead run left open), gaps, finish."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from broker.audit import log as audit
from broker.bucket import outbox
from broker.db.schema import recording_gaps, recordings
from broker.db.scope import TenantScope
from broker.identity import Principal
from broker.recordings import bounds, custody
from broker.recordings.common import (
    FINISHED,
    RECORDING,
    RecordingParts,
    actor,
    own_recording,
    recording_info,
)
from shared.wire import GapReport, RecordingInfo


class Lifecycle(RecordingParts):
    async def start(self, principal: Principal, started_at: datetime) -> str:
        """A new recording for the calling device; any it left open before is closed."""
        now = self._clock()
        bounds.check_recording_start(started_at, now=now, skew=self._skew)
        recording_id = str(uuid.uuid4())
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                await self._close_left_open(scope, principal, now)
                await scope.insert(
                    recordings,
                    id=recording_id,
                    user_id=principal.user_id,
                    device_id=principal.subject,
                    state=RECORDING,
                    started_at=started_at,
                    created_at=now,
                )
                await audit.record(
                    scope,
                    at=now,
                    actor=actor(principal),
                    action="recording.start",
                    target=recording_id,
                )
        return recording_id

    async def _close_left_open(
        self, scope: TenantScope, principal: Principal, now: datetime
    ) -> None:
        """Finish the device's recordings still open, with a gap `agent_died`.

        One agent runs per device (its instance lock), and it finishes its recording on any
        orderly stop. An open one when the device starts another is a dead run's that its
        restart could not close (the broker was unreachable then): left open, it would show
        as recording forever.
        """
        left_open = await scope.all(
            recordings,
            recordings.c.device_id == principal.subject,
            recordings.c.state == RECORDING,
        )
        for old in left_open:
            await scope.update(
                recordings, recordings.c.id == old.id, state=FINISHED, finished_at=now
            )
            await scope.insert(
                recording_gaps,
                id=str(uuid.uuid4()),
                recording_id=old.id,
                seqs="[]",
                reason="agent_died",
                reported_at=now,
            )
            await audit.record(
                scope,
                at=now,
                actor=actor(principal),
                action="recording.finish",
                target=old.id,
                details={"reason": "agent_died", "closed_by": "the device's next recording"},
            )
            await outbox.enqueue(scope, outbox.MANIFEST, old.id, now)

    async def finish(self, principal: Principal, recording_id: str) -> RecordingInfo:
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                recording = await own_recording(scope, principal, recording_id)
                if recording.state != FINISHED:
                    await scope.update(
                        recordings, recordings.c.id == recording_id, state=FINISHED, finished_at=now
                    )
                    await audit.record(
                        scope,
                        at=now,
                        actor=actor(principal),
                        action="recording.finish",
                        target=recording_id,
                    )
                    await outbox.enqueue(scope, outbox.MANIFEST, recording_id, now)
                result = await recording_info(scope, recording_id)
        return result

    async def report_gap(
        self, principal: Principal, recording_id: str, gap: GapReport
    ) -> RecordingInfo:
        """Record segments the recording's own device says will never arrive, and why."""
        now = self._clock()
        async for txn in self._db.attempts():
            async with txn as conn:
                scope = TenantScope(conn, principal.tenant_id)
                await audit.lock_chain(scope)  # first (README's lock order)
                recording = await own_recording(scope, principal, recording_id)
                bounds.check_gap(
                    gap.from_, gap.to,
                    recording_start=recording.started_at, now=now, skew=self._skew,
                )
                signature = await custody.admit_gap(scope, recording, gap)
                await scope.insert(
                    recording_gaps,
                    id=str(uuid.uuid4()),
                    recording_id=recording_id,
                    seqs=json.dumps(gap.seqs),
                    reason=gap.reason,
                    reported_at=now,
                    gap_from=gap.from_,
                    gap_to=gap.to,
                    signature=signature,
                )
                await audit.record(
                    scope,
                    at=now,
                    actor=actor(principal),
                    action="recording.gap",
                    target=recording_id,
                    details={"reason": gap.reason, "segments": len(gap.seqs)},
                )
                result = await recording_info(scope, recording_id)
        return result
