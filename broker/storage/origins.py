"""Where the player's media comes from: the origin of the tenant's bucket, for `media-src`.

The broker signs path-style URLs when an endpoint is configured and virtual-hosted URLs on
AWS (`broker.storage.s3`), so the origin follows from the bucket, region and endpoint alone;
no secret is read.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from broker.db.schema import storage_configs
from broker.db.scope import TenantScope


def origins_for(bucket: str, region: str, endpoint_url: str | None) -> list[str]:
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        return [f"{parts.scheme}://{parts.netloc}"]
    return [f"https://{bucket}.s3.{region}.amazonaws.com", f"https://{bucket}.s3.amazonaws.com"]


async def media_origins(scope: TenantScope) -> list[str]:
    row = await scope.one(storage_configs)
    if row is None:
        return []
    return origins_for(row.bucket, row.region, row.endpoint_url)
