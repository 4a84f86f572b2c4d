"""Upload grants (DESIGN G4) against the real broker and a real S3 endpoint over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from broker import admin
from broker.db.engine import create_engine
from broker.db.schema import segments
from tests.support.api import (
    Api,
    Device,
    Operator,
    Reply,
    enroll,
    parallel,
    put_with_grant,
    random_segment,
    start_recording,
)
from tests.support.broker import BrokerProcess
from tests.support.s3 import S3Endpoint

SIGNED = {"content-length", "content-md5", "host", "if-none-match", "x-amz-checksum-sha256"}


def grant(api: Api, device: Device, recording_id: str, seq: int, declared: dict) -> dict:
    reply = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/upload", declared,
        token=device.access_token,
    )
    assert reply.status == 200, reply.body
    return reply.body


def segment_states(broker: BrokerProcess, recording_id: str) -> list[str]:
    """The recording's segments' states as the database holds them, in seq order."""

    async def read() -> list[str]:
        engine = create_engine(broker.database_url)
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(
                    select(segments.c.state).where(segments.c.recording_id == recording_id)
                    .order_by(segments.c.seq)
                )).scalars())
        finally:
            await engine.dispose()

    return asyncio.run(read())


def complete(api: Api, device: Device, recording_id: str, seq: int):
    return api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/{seq}/complete",
        token=device.access_token,
    )


def test_grant_is_a_sigv4_put_with_every_constraint_signed(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    segment = random_segment()
    body = grant(api, device, recording_id, 0, segment.declaration())
    query = parse_qs(urlsplit(body["url"]).query)
    assert body["method"] == "PUT"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert int(query["X-Amz-Expires"][0]) <= 300
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= SIGNED
    assert body["headers"]["If-None-Match"] == "*"
    assert body["headers"]["Content-Length"] == str(len(segment.data))
    expected_key = (
        f"rec/{device.tenant.tenant_id}/{device.user_id}/{recording_id}/000000.mp4"
    )
    assert urlsplit(body["url"]).path == f"/{device.tenant.bucket}/{expected_key}"


def test_upload_lands_exactly_the_segment_and_the_url_works_once(
    api: Api, device: Device, s3_endpoint: S3Endpoint
) -> None:
    recording_id = start_recording(api, device)
    segment = random_segment(300_000)
    body = grant(api, device, recording_id, 0, segment.declaration())

    first = put_with_grant(body, segment.data)
    second = put_with_grant(body, segment.data)

    assert first.status == 200
    assert second.status == 412, "If-None-Match: * must make the grant single-use"
    key = urlsplit(body["url"]).path.split("/", 2)[2]
    stored = s3_endpoint.client().get_object(Bucket=device.tenant.bucket, Key=key)["Body"].read()
    assert stored == segment.data
    reply = complete(api, device, recording_id, 0)
    assert (reply.status, reply.body) == (200, {"state": "verified"})


def test_completion_of_a_segment_never_uploaded_is_refused(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    grant(api, device, recording_id, 3, random_segment().declaration())

    reply = complete(api, device, recording_id, 3)

    assert reply.status == 409
    assert reply.body["error"] == "segment_not_uploaded"
    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token)
    assert [s["state"] for s in info.body["segments"]] == ["pending"]


def test_a_completion_answers_verified_again_and_a_revoked_device_none(
    api: Api, broker: BrokerProcess, device: Device
) -> None:
    """The completion's checks hold on each database's read (PostgreSQL: one call, migration
    0018): completing a verified segment again answers verified; once the device is
    revoked, its completion of an uploaded segment is refused and changes nothing."""
    recording_id = start_recording(api, device)
    uploaded = {}
    for seq in (0, 1):
        segment = random_segment()
        assert put_with_grant(
            grant(api, device, recording_id, seq, segment.declaration()), segment.data
        ).status == 200
        uploaded[seq] = segment
    assert (complete(api, device, recording_id, 0).body) == {"state": "verified"}
    again = complete(api, device, recording_id, 0)
    assert (again.status, again.body) == (200, {"state": "verified"})

    Operator(broker).run(admin.revoke_device, tenant=device.tenant.tenant_id,
                         device=device.device_id)
    refused = complete(api, device, recording_id, 1)
    assert (refused.status, refused.body["error"]) == (401, "invalid_token")
    assert segment_states(broker, recording_id) == ["verified", "pending"]


def test_completion_of_an_undeclared_segment_is_refused(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    reply = complete(api, device, recording_id, 0)
    assert (reply.status, reply.body["error"]) == (404, "not_found")


def test_bytes_that_differ_from_the_declaration_are_not_verified(
    api: Api, device: Device
) -> None:
    """The endpoint here stores what it gets; the broker still refuses to verify it."""
    recording_id = start_recording(api, device)
    declared, sent = random_segment(), random_segment()
    body = grant(api, device, recording_id, 0, declared.declaration())
    put_with_grant(body, sent.data)

    reply = complete(api, device, recording_id, 0)

    assert (reply.status, reply.body["error"]) == (409, "segment_mismatch")


def test_regrant_keeps_the_key_and_is_counted(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    segment = random_segment()
    declaration = segment.declaration()
    first = grant(api, device, recording_id, 1, declaration)
    again = grant(api, device, recording_id, 1, declaration)
    assert urlsplit(first["url"]).path == urlsplit(again["url"]).path

    assert put_with_grant(again, segment.data).status == 200
    assert put_with_grant(first, segment.data).status == 412
    assert complete(api, device, recording_id, 1).status == 200
    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token)
    assert info.body["segments"][0]["grants"] == 2


def test_regrant_with_other_content_is_refused(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    grant(api, device, recording_id, 0, random_segment().declaration())
    reply = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
        random_segment().declaration(), token=device.access_token,
    )
    assert (reply.status, reply.body["error"]) == (409, "conflict")


def test_a_verified_segment_gets_no_new_grant(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    segment = random_segment()
    put_with_grant(grant(api, device, recording_id, 0, segment.declaration()), segment.data)
    assert complete(api, device, recording_id, 0).status == 200
    reply = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
        segment.declaration(), token=device.access_token,
    )
    assert reply.status == 409


def test_finished_recording_takes_no_new_segment(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    finished = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/finish", token=device.access_token
    )
    assert (finished.status, finished.body["state"]) == (200, "finished")
    reply = api.call(
        "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
        random_segment().declaration(), token=device.access_token,
    )
    assert (reply.status, reply.body["error"]) == (409, "recording_finished")


def test_a_new_recording_closes_the_one_a_dead_run_of_the_device_left_open(
    api: Api, broker: BrokerProcess, device: Device
) -> None:
    # An agent killed while the broker was unreachable at its restart could not finish its
    # old recording: the device's next recording does, with an agent_died gap.
    other_device = enroll(api, broker, device.tenant, device.user_id)  # same employee
    elsewhere = start_recording(api, other_device)
    dead = start_recording(api, device)
    fresh = start_recording(api, device)

    def info(recording_id: str, who: Device) -> dict:
        reply = api.call("GET", f"/api/v1/recordings/{recording_id}", token=who.access_token)
        assert reply.status == 200, reply.body
        return reply.body

    closed = info(dead, device)
    assert closed["state"] == "finished"
    assert [(g["reason"], g["seqs"]) for g in closed["gaps"]] == [("agent_died", [])]
    assert info(fresh, device)["state"] == "recording"
    assert info(fresh, device)["gaps"] == []
    assert info(elsewhere, other_device)["state"] == "recording"  # another device's run


def test_the_declared_codec_is_kept_with_the_segment_and_an_older_agents_has_none(
    api: Api, device: Device
) -> None:
    recording_id = start_recording(api, device)
    av1, older = random_segment(), random_segment()
    grant(api, device, recording_id, 0, av1.declaration(codec="av01.0.08M.08"))
    grant(api, device, recording_id, 1, older.declaration())  # an agent that says nothing
    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token)
    assert info.status == 200, info.body
    assert [(s["seq"], s["codec"]) for s in info.body["segments"]] == [
        (0, "av01.0.08M.08"), (1, None),
    ]


def test_a_codec_that_is_not_an_rfc_6381_name_is_refused(api: Api, device: Device) -> None:
    recording_id = start_recording(api, device)
    for bad in ('avc1.640028"; x', "av01 0 08M", "a" * 70, "", 7):
        reply = api.call(
            "POST", f"/api/v1/recordings/{recording_id}/segments/0/upload",
            random_segment().declaration(codec=bad), token=device.access_token,
        )
        assert reply.status == 400, (bad, reply.body)
        assert reply.body["error"] == "invalid_field"
        assert reply.body["message"].startswith("codec: "), reply.body
    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token)
    assert info.body["segments"] == []


def test_parallel_grants_completions_and_heartbeats_of_one_segment_each_succeed(
    api: Api, broker: BrokerProcess, device: Device
) -> None:
    """Eight grants of one new seq at once (PostgreSQL: the segment and its grant in one
    statement; the losers of its unique key run again and are granted the same object),
    then eight completions at once, and eight heartbeats at once (PostgreSQL: one call
    each): all succeed, one segment, verified, every grant counted."""
    recording_id = start_recording(api, device)
    segment = random_segment()
    declared = segment.declaration()
    path = f"/api/v1/recordings/{recording_id}/segments/0"
    n = 8

    def at_once(call: Callable[[], Reply]) -> list[Reply]:
        return parallel([call] * n)

    grants = at_once(lambda: api.call("POST", path + "/upload", declared,
                                      token=device.access_token))
    assert [g.status for g in grants] == [200] * n, [g.body for g in grants]
    assert len({urlsplit(g.body["url"]).path for g in grants}) == 1, "one object key"
    assert put_with_grant(grants[0].body, segment.data).status == 200

    done = at_once(lambda: api.call("POST", path + "/complete", token=device.access_token))
    assert [(d.status, d.body) for d in done] == [(200, {"state": "verified"})] * n
    beats = at_once(lambda: api.call("POST", "/api/v1/devices/heartbeat", {
        "state": "recording", "spool_bytes": 0, "spool_segments": 0, "errors": 0,
    }, token=device.access_token))
    assert [b.status for b in beats] == [200] * n, [b.body for b in beats]

    info = api.call("GET", f"/api/v1/recordings/{recording_id}", token=device.access_token)
    assert [(s["seq"], s["state"], s["grants"]) for s in info.body["segments"]] == [
        (0, "verified", n)
    ]
