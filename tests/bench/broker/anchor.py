"""The anchor: the least a service can do for an upload grant, to hold the broker against.

    python -m tests.bench.broker.anchor --port P --database-url URL --s3-url URL --bucket B

`POST /grant` verifies an HS256 JWT (PyJWT, the broker's library), INSERTs one row (the
broker's database driver, through SQLAlchemy's asyncio engine as the broker does) and
presigns a PUT with boto3 (inline: it is local computation), then answers JSON. The HMAC key
comes from BENCH_ANCHOR_KEY. Its own time per request is sent back in `X-Anchor-Ms`.
Everything the broker adds beyond this (row-level security, custody signatures, the audit
chain, rate budgets, the completion's HeadObject…) is what the ratio prices.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import boto3
import jwt
from aiohttp import web
from botocore.config import Config
from sqlalchemy import Column, DateTime, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import create_async_engine

TIMING_HEADER = "X-Anchor-Ms"
KEY_VAR = "BENCH_ANCHOR_KEY"
_meta = MetaData()
grants = Table(
    "anchor_grants", _meta,
    Column("id", String(36), primary_key=True),
    Column("device_id", String(36), nullable=False),
    Column("object_key", String(300), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
)
ENGINE: web.AppKey[Any] = web.AppKey("engine", object)
S3: web.AppKey[Any] = web.AppKey("s3", object)


def app(args: argparse.Namespace, key: bytes) -> web.Application:
    application = web.Application()

    async def resources(application: web.Application) -> AsyncIterator[None]:
        engine = create_async_engine(args.database_url, pool_size=10, max_overflow=10)
        async with engine.begin() as conn:
            await conn.run_sync(_meta.create_all)
        application[ENGINE] = engine
        application[S3] = boto3.session.Session().client(
            "s3", endpoint_url=args.s3_url, region_name=args.region,
            aws_access_key_id="bench", aws_secret_access_key="bench-secret",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        yield
        await engine.dispose()

    async def grant(request: web.Request) -> web.Response:
        start = time.perf_counter()
        _, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, key, algorithms=["HS256"], audience="device")
        except jwt.InvalidTokenError:
            return web.json_response({"error": "unauthenticated"}, status=401)
        body = await request.json()
        object_key = f"rec/{claims['sub']}/{uuid.uuid4()}.mp4"
        async with request.app[ENGINE].begin() as conn:
            await conn.execute(insert(grants).values(
                id=str(uuid.uuid4()), device_id=claims["sub"], object_key=object_key,
                issued_at=datetime.now(UTC),
            ))
        url = request.app[S3].generate_presigned_url(
            "put_object", HttpMethod="PUT", ExpiresIn=300,
            Params={"Bucket": args.bucket, "Key": object_key, "ContentLength": body["size"],
                    "ContentMD5": body["md5"], "ChecksumSHA256": body["sha256"]},
        )
        response = web.json_response({"url": url, "method": "PUT"})
        response.headers[TIMING_HEADER] = f"{(time.perf_counter() - start) * 1000:.3f}"
        return response

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application.cleanup_ctx.append(resources)
    application.router.add_post("/grant", grant)
    application.router.add_get("/healthz", healthz)
    return application


def token(key: bytes, device_id: str) -> str:
    now = int(time.time())
    return jwt.encode(
        {"aud": "device", "sub": device_id, "iat": now, "exp": now + 900}, key,
        algorithm="HS256",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--s3-url", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--region", default="eu-central-1")
    args = parser.parse_args()
    key = os.environ.get(KEY_VAR, "")
    if len(key) < 32:
        parser.error(f"{KEY_VAR} must hold the HMAC key (32 characters or more)")
    web.run_app(app(args, key.encode()), host=args.host, port=args.port, print=None,
                access_log=None)


if __name__ == "__main__":
    main()
