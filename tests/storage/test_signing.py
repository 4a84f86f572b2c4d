"""The broker signs its presigned PUTs itself (SigV4 in the query, `botocore.auth`) on the
device path, without botocore's request pipeline: the URL must be exactly the one
`generate_presigned_url("put_object", …)` makes for the same parameters, every header the
agent sends signed. (The strict gate checks such URLs end to end: test_presigned_urls.py.)
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from broker.storage.config import candidate
from broker.storage.endpoint import EndpointPolicy
from broker.storage.s3 import BucketClient
from shared.keys import SEGMENT_CONTENT_TYPE


def _date(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Date"][0]


def test_the_put_presign_is_the_one_botocore_makes() -> None:
    for endpoint, style in (("http://127.0.0.1:9000", "path"), (None, "virtual")):
        config = candidate(
            "t-sign", bucket="bucketreel-signing", region="eu-west-1", endpoint_url=endpoint,
            prefix="rec", access_key_id="AKIAABCDEFGHIJKLMNOP", secret_access_key="s" * 40,
            role_arn=None, external_id=None,
        )
        client = BucketClient(config, policy=EndpointPolicy(dev_mode=True))
        key = "rec/t/u/r 1/000007.mp4"
        params: dict[str, Any] = {
            "Bucket": config.bucket, "Key": key, "IfNoneMatch": "*", "ContentLength": 1234,
            "ContentMD5": "bWQ1bWQ1bWQ1bWQ1bWQ1bQ==", "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": "c2hhMjU2c2hhMjU2c2hhMjU2c2hhMjU2c2hhMjU2c2g=",
            "ContentType": SEGMENT_CONTENT_TYPE, "Metadata": {"bucketreel-seq": "7"},
        }
        for _ in range(5):  # both inside one second of the clock (X-Amz-Date)
            ours = client.presign_put(
                key, size=1234, sha256_b64=params["ChecksumSHA256"],
                md5_b64=params["ContentMD5"], ttl=300, metadata=params["Metadata"],
            )
            theirs = client._raw().generate_presigned_url(
                "put_object", Params=params, ExpiresIn=300, HttpMethod="PUT"
            )
            if _date(ours.url) == _date(theirs):
                break
        assert ours.url == theirs, style
        signed = parse_qs(urlsplit(ours.url).query)["X-Amz-SignedHeaders"][0].split(";")
        assert {h.lower() for h in ours.headers} | {"host"} == set(signed), style
