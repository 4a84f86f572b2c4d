"""Master-key rotation: re-seal every sealed value in the database under the current KEK.

Every sealed column of the broker is listed in `SEALED_COLUMNS` (bucket secrets, users' TOTP
secrets, TOTP secrets pending in enrollment challenges). `reseal_all` walks each in batches,
one short transaction per batch, and rewrites only rows sealed under an older version, each
with a conditional UPDATE (same version, same blob), so a row written concurrently by a
serving replica is never clobbered. It is idempotent: a second run finds nothing to do.

No downtime, in three steps: (1) set `BUCKETREEL_MASTER_KEYS=v1:…,v2:…` on every replica and
restart them one by one (the highest version seals from then on, every listed version
unseals); (2) `bucketreel-broker admin rotate-master-key`; (3) drop `v1` from the setting.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Table, and_, select, update

from broker.auth.login import TOTP_SEAL_PURPOSE
from broker.db.database import Database
from broker.db.schema import mfa_challenges, storage_configs, users
from broker.errors import BrokerError, ConfigError
from broker.sealing import Sealed, SealError, seal, unseal
from broker.settings import MasterKeys
from broker.storage.config import SEAL_PURPOSE

log = logging.getLogger(__name__)
DEFAULT_BATCH = 200


@dataclass(frozen=True, slots=True)
class SealedColumn:
    name: str
    table: Table
    blob: str
    version: str
    purpose: str
    row_ref: Callable[[Row[Any]], str]

    def key(self, row: Row[Any]) -> list[Any]:
        return [column == getattr(row, column.name) for column in self.table.primary_key]


SEALED_COLUMNS: tuple[SealedColumn, ...] = (
    SealedColumn(
        "storage_configs.secret_sealed", storage_configs, "secret_sealed", "kek_version",
        SEAL_PURPOSE, lambda row: f"v{row.credential_version}",
    ),
    SealedColumn(
        "users.totp_sealed", users, "totp_sealed", "totp_kek_version",
        TOTP_SEAL_PURPOSE, lambda row: str(row.id),
    ),
    SealedColumn(
        "mfa_challenges.pending_sealed", mfa_challenges, "pending_sealed", "pending_kek_version",
        TOTP_SEAL_PURPOSE, lambda row: str(row.user_id),
    ),
)


async def reseal_all(
    db: Database, keys: MasterKeys, *, batch_size: int = DEFAULT_BATCH
) -> dict[str, Any]:
    """Re-seal every row not under `keys.current`; returns counts per column."""
    if not 1 <= batch_size <= 10_000:
        raise BrokerError("the batch size must be 1 to 10000")
    resealed: dict[str, int] = {}
    for column in SEALED_COLUMNS:
        resealed[column.name] = await _reseal_column(db, keys, column, batch_size)
    remaining = await count_outdated(db, keys)
    log.info("master key rotation: resealed %s under %s", resealed, keys.current)
    return {"kek_version": keys.current, "resealed": resealed, "remaining": remaining}


async def count_outdated(db: Database, keys: MasterKeys) -> dict[str, int]:
    """How many sealed values each column still holds under another version than the current."""
    counts: dict[str, int] = {}
    async with db.transaction() as conn:
        for column in SEALED_COLUMNS:
            rows = (await conn.execute(_outdated(column, keys))).all()
            counts[column.name] = len(rows)
    return counts


def _outdated(column: SealedColumn, keys: MasterKeys) -> Any:
    table = column.table
    return select(table).where(
        table.c[column.blob].is_not(None), table.c[column.version] != keys.current
    )


async def _reseal_column(
    db: Database, keys: MasterKeys, column: SealedColumn, batch_size: int
) -> int:
    table = column.table
    done = 0
    while True:
        async with db.transaction() as conn:
            rows = (await conn.execute(_outdated(column, keys).limit(batch_size))).all()
            if not rows:
                return done
            for row in rows:
                old = Sealed(getattr(row, column.version), getattr(row, column.blob))
                plaintext = _open(keys, column, row, old)
                new = seal(
                    keys, plaintext, purpose=column.purpose, tenant_id=row.tenant_id,
                    row_ref=column.row_ref(row),
                )
                result = await conn.execute(
                    update(table)
                    .where(and_(
                        *column.key(row),
                        table.c[column.version] == old.kek_version,
                        table.c[column.blob] == old.blob,
                    ))
                    .values({column.blob: new.blob, column.version: new.kek_version})
                )
                done += int(result.rowcount)


def _open(keys: MasterKeys, column: SealedColumn, row: Row[Any], sealed: Sealed) -> bytes:
    try:
        return unseal(
            keys, sealed, purpose=column.purpose, tenant_id=row.tenant_id,
            row_ref=column.row_ref(row),
        )
    except (SealError, ConfigError) as exc:
        raise BrokerError(
            f"{column.name} of tenant {row.tenant_id} (sealed under {sealed.kek_version}) "
            f"does not open: {exc.message}. Nothing of this row was changed; keep every "
            "version that still seals data in BUCKETREEL_MASTER_KEYS."
        ) from None
