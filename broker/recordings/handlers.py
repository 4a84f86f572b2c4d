"""HTTP handlers for recordings: parse, call `RecordingService`, shape the reply."""

from __future__ import annotations

from aiohttp import web

from broker.auth.tokens import Principal
from broker.web.appkeys import RECORDINGS
from broker.web.http import read_json, reply
from shared.wire import StartRecording, UploadRequest, parse_seq


async def start(request: web.Request, principal: Principal) -> web.Response:
    body = StartRecording.from_json(await read_json(request))
    recording_id = await request.app[RECORDINGS].start(principal, body.started_at)
    return reply({"recording_id": recording_id}, status=201)


async def upload(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    body = UploadRequest.from_json(await read_json(request))
    grant = await request.app[RECORDINGS].grant_upload(
        principal, request.match_info["recording_id"], seq, body
    )
    return reply(grant.to_json())


async def complete(request: web.Request, principal: Principal) -> web.Response:
    seq = parse_seq(request.match_info["seq"])
    state = await request.app[RECORDINGS].complete(
        principal, request.match_info["recording_id"], seq
    )
    return reply({"state": state})


async def finish(request: web.Request, principal: Principal) -> web.Response:
    info = await request.app[RECORDINGS].finish(principal, request.match_info["recording_id"])
    return reply(info.to_json())


async def get(request: web.Request, principal: Principal) -> web.Response:
    info = await request.app[RECORDINGS].get(principal, request.match_info["recording_id"])
    return reply(info.to_json())
