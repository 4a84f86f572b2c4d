"""HTTP handlers for recordings: parse, call `RecordingService`, shape the reply."""

from __future__ import annotations

from aiohttp import web

from broker.identity import Principal
from broker.web.appkeys import SERVICES
from broker.web.http import read_json, reply
from shared.wire import GapReport, StartRecording, UploadRequest, format_timestamp, parse_seq


async def start(request: web.Request, principal: Principal) -> web.Response:
    body = StartRecording.from_json(await read_json(request))
    recording_id = await request.app[SERVICES].recordings.start(principal, body.started_at)
    return reply({"recording_id": recording_id}, status=201)


async def upload(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    body = UploadRequest.from_json(await read_json(request))
    grant = await request.app[SERVICES].recordings.grant_upload(
        principal, request.match_info["recording_id"], seq, body
    )
    return reply(grant.to_json())


async def complete(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    state = await request.app[SERVICES].recordings.complete(
        principal, request.match_info["recording_id"], seq
    )
    return reply({"state": state})


async def finish(request: web.Request, principal: Principal) -> web.Response:
    info = await request.app[SERVICES].recordings.finish(
        principal, request.match_info["recording_id"]
    )
    return reply(info.to_json())


async def gaps(request: web.Request, principal: Principal) -> web.Response:
    """The recording's own device reports segments that will never arrive."""
    body = GapReport.from_json(await read_json(request))
    info = await request.app[SERVICES].recordings.report_gap(
        principal, request.match_info["recording_id"], body
    )
    return reply(info.to_json(), status=201)


async def get(request: web.Request, principal: Principal) -> web.Response:
    """The device that made it, or a person allowed to see its employee."""
    recording_id = request.match_info["recording_id"]
    if principal.kind == "device":
        info = await request.app[SERVICES].recordings.get(principal, recording_id)
    else:
        info = await request.app[SERVICES].viewing.recording(principal, recording_id)
    return reply(info.to_json())


async def employees(request: web.Request, principal: Principal) -> web.Response:
    return reply({"employees": await request.app[SERVICES].viewing.employees(principal)})


async def employee_recordings(request: web.Request, principal: Principal) -> web.Response:
    listed = await request.app[SERVICES].viewing.recordings_of(
        principal, request.match_info["user_id"]
    )
    return reply({"recordings": listed})


async def view(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    url = await request.app[SERVICES].viewing.view_url(
        principal, request.match_info["recording_id"], seq
    )
    return reply({"url": url.url, "expires_at": format_timestamp(url.expires_at)})
