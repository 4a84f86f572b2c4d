"""The outbox flusher in this process, on a database of its own (no broker process racing
it) and moto over HTTP: anchors of older heads due with a newer one are covered by it and not
written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import select

from broker import admin
from broker.bucket import outbox
from broker.clock import utcnow
from broker.db.schema import audit_log, bucket_outbox
from broker.db.scope import TenantScope
from broker.services import build_services
from broker.settings import Settings, generate_secrets
from shared.bucket import keys as bucket_keys
from shared.bucket.records import AuditAnchor, decode
from tests.support.s3 import S3Endpoint


def exists(s3: S3Endpoint, bucket: str, key: str) -> bool:
    try:
        s3.client().head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def test_older_anchors_due_with_a_newer_one_are_covered_by_it(
    s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    settings = Settings.from_env({
        **generate_secrets(), "BUCKETREEL_DATABASE_URL":
        f"sqlite+aiosqlite:///{tmp_path / 'broker.db'}",
        "BUCKETREEL_ALLOWED_ENDPOINT_HOSTS": "127.0.0.1",
    })
    bucket = s3_endpoint.create_bucket()

    async def go() -> tuple[str, list[int], list[Any]]:
        async with admin.context(settings) as ctx:
            tenant = (await admin.create_tenant(ctx, name="coalesce"))["tenant_id"]
            await admin.set_storage(
                ctx, tenant=tenant, bucket=bucket, region=s3_endpoint.region,
                endpoint_url=s3_endpoint.url, prefix="co",
                access_key_id=s3_endpoint.access_key_id,
                secret_access_key=s3_endpoint.secret_access_key, accept_risk=True,
            )
            async with ctx.db.transaction() as conn:
                scope = TenantScope(conn, tenant)
                seqs = [r.seq for r in await scope.all(audit_log, order_by=[audit_log.c.seq])]
                for seq in seqs:
                    await outbox.enqueue(scope, outbox.ANCHOR, str(seq), utcnow())
            services = build_services(settings, ctx.db, utcnow)
            written = await services.bucket.deliver_due()
            assert written == 1
            async with ctx.db.transaction() as conn:
                rows = list(await conn.execute(select(bucket_outbox)))
            return tenant, seqs, rows

    tenant, seqs, rows = asyncio.run(go())
    assert len(seqs) >= 2
    newest = max(seqs)
    assert all(r.delivered_at is not None for r in rows)
    assert {r.ref: r.last_error for r in rows} == {
        str(seq): None if seq == newest else f"covered by the anchor of {newest}" for seq in seqs
    }
    anchor_key = bucket_keys.anchor_key("co", tenant, newest)
    body = s3_endpoint.client().get_object(Bucket=bucket, Key=anchor_key)["Body"].read()
    assert decode(body, AuditAnchor).seq == newest
    assert not any(exists(s3_endpoint, bucket, bucket_keys.anchor_key("co", tenant, seq))
                   for seq in seqs if seq != newest)
