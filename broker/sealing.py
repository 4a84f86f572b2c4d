"""Secrets at rest: AES-256-GCM under versioned key-encryption keys.

The associated data binds each sealed value to what it is (purpose), whose it is (tenant and
row) and the key version, so a sealed value copied to another row or tenant fails to open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.errors import BrokerError
from broker.settings import MasterKeys

NONCE_BYTES = 12
_CHAIN_KEY_INFO = b"bucketreel audit chain mac v1"


class SealError(BrokerError):
    """A sealed value does not open: wrong key, wrong row, or tampered."""


@dataclass(frozen=True, slots=True)
class Sealed:
    kek_version: str
    blob: bytes


def _aad(purpose: str, tenant_id: str, row_ref: str, kek_version: str) -> bytes:
    return "\x1f".join(("bucketreel", purpose, tenant_id, row_ref, kek_version)).encode()


def seal(
    keys: MasterKeys, plaintext: bytes, *, purpose: str, tenant_id: str, row_ref: str
) -> Sealed:
    version = keys.current
    nonce = os.urandom(NONCE_BYTES)
    aad = _aad(purpose, tenant_id, row_ref, version)
    return Sealed(version, nonce + AESGCM(keys.get(version)).encrypt(nonce, plaintext, aad))


def unseal(
    keys: MasterKeys, sealed: Sealed, *, purpose: str, tenant_id: str, row_ref: str
) -> bytes:
    nonce, ciphertext = sealed.blob[:NONCE_BYTES], sealed.blob[NONCE_BYTES:]
    aad = _aad(purpose, tenant_id, row_ref, sealed.kek_version)
    try:
        return AESGCM(keys.get(sealed.kek_version)).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise SealError(f"sealed {purpose} of tenant {tenant_id} does not open") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainKeys:
    """Audit MAC keys by version; the newest version MACs new entries, every one verifies."""

    keys: Mapping[str, bytes] = field(repr=False)
    current: str

    @classmethod
    def from_master(cls, master: MasterKeys) -> ChainKeys:
        return cls(
            keys={version: _derive(key) for version, key in master.keys.items()},
            current=master.current,
        )

    def get(self, version: str) -> bytes | None:
        return self.keys.get(version)


def _derive(master_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_CHAIN_KEY_INFO).derive(
        master_key
    )
