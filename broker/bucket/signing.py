"""The broker's Ed25519 key for what it writes to the bucket.

`BUCKETREEL_SIGNING_KEY` (base64 of a 32-byte seed; `gen-secrets` prints one) when set;
otherwise derived (HKDF-SHA256, its own info string, so it is independent of every other key
derived from it) from the newest master key, so a deployment made before this key existed
signs without a new setting. Rotating the master keys then changes the signing key and its
`key_id`: a new key record is published, and what was signed before still verifies with the
old record, which stays in the bucket. The private key is never logged (its repr shows the
key id only) and never leaves the process.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.settings import Settings
from shared.bucket.records import BrokerSigner

_INFO = b"bucketreel bucket signing key v1"


def broker_signer(settings: Settings) -> BrokerSigner:
    if settings.signing_key is not None:
        return BrokerSigner.from_seed(base64.b64decode(settings.signing_key.reveal()))
    master = settings.master_keys.get(settings.master_keys.current)
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(master)
    return BrokerSigner.from_seed(seed)
