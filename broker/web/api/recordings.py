"""HTTP handlers for recordings: parse, call `RecordingService`, shape the reply."""

from __future__ import annotations

from aiohttp import web

from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import reply, shape
from shared.api import Employees, Recordings, ViewUrl
from shared.wire import (
    GapReport,
    RecordingCreated,
    SegmentState,
    StartRecording,
    UploadRequest,
    format_timestamp,
    parse_seq,
)


async def start(request: web.Request, principal: Principal, body: StartRecording) -> web.Response:
    recording_id = await request.app[SERVICES].recordings.start(principal, body.started_at)
    return reply(RecordingCreated(recording_id=recording_id), status=201)


async def upload(request: web.Request, principal: Principal, body: UploadRequest) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    grant = await request.app[SERVICES].recordings.grant_upload(
        principal, request.match_info["recording_id"], seq, body
    )
    return reply(grant)


async def complete(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    state = await request.app[SERVICES].recordings.complete(
        principal, request.match_info["recording_id"], seq
    )
    return reply(shape(SegmentState, {"state": state}))


async def finish(request: web.Request, principal: Principal) -> web.Response:
    info = await request.app[SERVICES].recordings.finish(
        principal, request.match_info["recording_id"]
    )
    return reply(info)


async def gaps(request: web.Request, principal: Principal, body: GapReport) -> web.Response:
    """The recording's own device reports segments that will never arrive."""
    info = await request.app[SERVICES].recordings.report_gap(
        principal, request.match_info["recording_id"], body
    )
    return reply(info, status=201)


async def get(request: web.Request, principal: Principal) -> web.Response:
    """The device that made it, or a person allowed to see its employee."""
    recording_id = request.match_info["recording_id"]
    if principal.kind == "device":
        info = await request.app[SERVICES].recordings.get(principal, recording_id)
    else:
        info = await request.app[SERVICES].viewing.recording(principal, recording_id)
    return reply(info)


async def employees(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].viewing.employees(principal)
    return reply(shape(Employees, {"employees": listed}))


async def employee_recordings(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].viewing.recordings_of(
        principal, request.match_info["user_id"]
    )
    return reply(shape(Recordings, {"recordings": listed}))


async def view(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    url = await request.app[SERVICES].viewing.view_url(
        principal, request.match_info["recording_id"], seq
    )
    return reply(ViewUrl(url=url.url, expires_at=format_timestamp(url.expires_at)))
