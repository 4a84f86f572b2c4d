"""Whom the vault believes: the broker keys published under `_bucketreel/keys/`, and the
device records under `_bucketreel/devices/` that one of those keys signed.

A key record names itself (its `key_id` is its key's hash), so a record that does not is
forged. Anyone who may write the prefix could publish a key of their own, though: `--trust-key`
pins the key ids to believe (print them with `list --json` on a day nobody doubts, or take
them from the broker's operator), and any other key is then not trusted. With Object Lock on
the bucket (README, "Retention"), records, once written, stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from shared.bucket import records
from shared.bucket.keys import device_key
from shared.bucket.records import AuditAnchor, BrokerKey, BucketFormatError, DeviceRecord, Manifest
from shared.vault.inventory import Inventory
from shared.vault.problems import Kind, Problem
from shared.vault.store import Store

T = TypeVar("T", BrokerKey, DeviceRecord, Manifest, AuditAnchor)


def read_document(store: Store, key: str, kind: type[T]) -> tuple[T | None, Problem | None]:
    """The control document at `key`, or why there is none to check (missing, malformed)."""
    raw = store.read_small(key)
    if raw is None:
        return None, Problem(Kind.MISSING, key, "listed, then gone")
    try:
        doc: T = records.decode(raw, kind)
    except BucketFormatError as exc:
        return None, Problem(Kind.ALTERED, key, str(exc))
    return doc, None


@dataclass(slots=True, kw_only=True)
class DeviceState:
    device_id: str
    record: DeviceRecord | None  # None when missing or unreadable
    trusted: bool  # its broker signature verifies
    problems: list[Problem] = field(default_factory=list)


class Trust:
    """The broker keys and device records of one bucket prefix, read and checked once."""

    def __init__(
        self, store: Store, inventory: Inventory, *, pinned: frozenset[str] | None = None
    ) -> None:
        self._store = store
        self._inventory = inventory
        self.pinned = pinned
        self.keys: dict[str, str] = {}  # key_id -> base64 public key, trusted
        self.records: dict[str, BrokerKey] = {}  # the trusted keys' records, as published
        self.published: list[str] = []  # key ids of the well-formed records
        self.problems: list[Problem] = []
        self._devices: dict[str, DeviceState] = {}
        for listed in inventory.broker_keys:
            self._load_key(listed.key)

    def _load_key(self, key: str) -> None:
        record, unreadable = read_document(self._store, key, BrokerKey)
        if record is None:
            self.problems.extend([unreadable] if unreadable else [])
            return
        if not records.check_key_record(record) or not key.endswith(f"/{record.key_id}.json"):
            self.problems.append(Problem(
                Kind.FORGED, key,
                "this key record does not name itself (its key_id is not its key's "
                "hash, or it sits under another name)",
            ))
            return
        self.published.append(record.key_id)
        if self.pinned is None or record.key_id in self.pinned:
            self.keys[record.key_id] = record.public_key
            self.records[record.key_id] = record

    def signature_problem(self, doc: records.Signed, subject: str) -> Problem | None:
        """Why `doc`'s broker signature is not to be believed, or None when it is."""
        if not doc.signature or not doc.key_id:
            return Problem(Kind.UNSIGNED, subject, "it carries no signature")
        if doc.key_id not in self.keys:
            why = (
                "which is not among the keys trusted with --trust-key"
                if self.pinned is not None and doc.key_id in self.published
                else "which is not published under _bucketreel/keys/"
            )
            return Problem(
                Kind.FORGED, subject, f"signed with key {doc.key_id}, {why}"
            )
        if not records.verify(doc, self.keys):
            return Problem(
                Kind.FORGED, subject,
                f"its signature does not verify against broker key {doc.key_id} "
                "(written or changed by someone without the broker's key)",
            )
        return None

    def device(self, device_id: str) -> DeviceState:
        """The device's record and whether it is to be believed (read once)."""
        known = self._devices.get(device_id)
        if known is None:
            known = self._read_device(device_id)
            self._devices[device_id] = known
        return known

    def _read_device(self, device_id: str) -> DeviceState:
        key = device_key(self._store.location.prefix, device_id)
        state = DeviceState(device_id=device_id, record=None, trusted=False)
        if device_id not in self._inventory.devices:
            state.problems.append(Problem(
                Kind.MISSING, key, f"no record of device {device_id}: "
                "its segments' signatures cannot be checked",
            ))
            return state
        record, unreadable = read_document(self._store, key, DeviceRecord)
        if record is None:
            state.problems.extend([unreadable] if unreadable else [])
            return state
        state.record = record
        problem = self.signature_problem(record, key)
        if problem is None and record.device_id != device_id:
            problem = Problem(
                Kind.ALTERED, key,
                f"it is the record of device {record.device_id}, not {device_id}",
            )
        if problem is not None:
            state.problems.append(problem)
        state.trusted = problem is None
        return state

    def devices(self) -> list[DeviceState]:
        return [self.device(d) for d in sorted(self._inventory.devices)]
