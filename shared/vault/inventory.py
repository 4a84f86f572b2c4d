"""What the bucket holds under the prefix, from one listing (ListObjectsV2), sorted by kind.

Recordings are found by their keys alone (`shared.bucket.keys`):
`<prefix>/<tenant>/<user>/<recording>/<seq>.mp4` and `…/manifest.json`. What sits under
`<prefix>/_bucketreel/` is the broker's control records: public keys, device records and audit
anchors (and the storage self-check's probes, which are ignored). Nothing is read yet: the
checks (`shared.vault.recording`) fetch what they need.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from shared.bucket.keys import CONTROL, MANIFEST_NAME, segment_seq
from shared.vault.store import Listed, Store


@dataclass(slots=True, kw_only=True)
class RecordingRef:
    tenant_id: str
    user_id: str
    recording_id: str
    segments: dict[int, Listed] = field(default_factory=dict)
    manifest: Listed | None = None
    strays: list[str] = field(default_factory=list)  # other objects beside the segments

    @property
    def name(self) -> str:
        return f"{self.tenant_id}/{self.user_id}/{self.recording_id}"


@dataclass(slots=True, kw_only=True)
class Inventory:
    broker_keys: list[Listed] = field(default_factory=list)
    devices: dict[str, Listed] = field(default_factory=dict)
    anchors: dict[str, list[Listed]] = field(default_factory=dict)  # by tenant, in seq order
    recordings: list[RecordingRef] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)

    def find(self, recording_id: str) -> list[RecordingRef]:
        return [r for r in self.recordings if r.recording_id == recording_id]


def _strip_json(name: str) -> str | None:
    return name.removesuffix(".json") if name.endswith(".json") and len(name) > 5 else None


def take(listed: Iterable[Listed], prefix: str) -> Inventory:
    """Sort a listing of `<prefix>/` into an inventory."""
    base = prefix.strip("/")
    inventory = Inventory()
    recordings: dict[tuple[str, str, str], RecordingRef] = {}
    for item in listed:
        rest = item.key[len(base) + 1:] if base else item.key
        parts = rest.split("/")
        if parts[0] == CONTROL:
            _control(inventory, parts[1:], item)
            continue
        if len(parts) != 4 or not all(parts):
            inventory.strays.append(item.key)
            continue
        tenant_id, user_id, recording_id, name = parts
        ref = recordings.get((tenant_id, user_id, recording_id))
        if ref is None:
            ref = RecordingRef(tenant_id=tenant_id, user_id=user_id, recording_id=recording_id)
            recordings[(tenant_id, user_id, recording_id)] = ref
        seq = segment_seq(name)
        if seq is not None:
            ref.segments[seq] = item
        elif name == MANIFEST_NAME:
            ref.manifest = item
        else:
            ref.strays.append(item.key)
    inventory.recordings = sorted(recordings.values(), key=lambda r: r.name)
    for anchors in inventory.anchors.values():
        anchors.sort(key=lambda a: a.key)
    return inventory


def _control(inventory: Inventory, parts: list[str], item: Listed) -> None:
    if len(parts) == 2 and parts[0] == "keys" and _strip_json(parts[1]):
        inventory.broker_keys.append(item)
    elif len(parts) == 2 and parts[0] == "devices" and (device := _strip_json(parts[1])):
        inventory.devices[device] = item
    elif len(parts) == 3 and parts[0] == "audit" and _strip_json(parts[2]):
        inventory.anchors.setdefault(parts[1], []).append(item)
    elif parts and parts[0] == "selfcheck":
        return  # the broker's storage self-check probes (refused writes, if any landed)
    else:
        inventory.strays.append(item.key)


def scan(store: Store, *only: str) -> Inventory:
    """The inventory of the prefix (or of `<prefix>/<part>/` for each of `only`)."""
    if not only:
        return take(store.keys(), store.location.prefix)
    return take((item for part in only for item in store.keys(part)), store.location.prefix)
