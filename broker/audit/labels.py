"""Audit entries in words: who did it and what it was about, with the pages they are.

The log stores actors as `user:<id>`, `device:<id>` or `operator`, and targets as ids or
object keys; people read names. `Labels` reads the names the entries of one listing need
(people, devices, recordings, the segments whose keys are targets) in a few queries, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.audit.log import Entry
from broker.db.schema import devices, recordings, segments, users
from broker.db.scope import TenantScope


def person_label(row: Any) -> str:
    """A person as listings show them: "Name (email)", or the email alone."""
    name = getattr(row, "display_name", None)
    return f"{name} ({row.email})" if name else str(row.email)


@dataclass(frozen=True, slots=True)
class Named:
    text: str
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Labels:
    tenant_id: str
    people: dict[str, Any]
    devices: dict[str, Any]
    recordings: dict[str, Any]
    keys: dict[str, Any]  # object key → segment row

    @classmethod
    async def read(cls, scope: TenantScope, entries: Sequence[Entry]) -> Labels:
        people = {r.id: r for r in await scope.all(users)}
        names = {e.target for e in entries} | {
            str(e.details["recording"]) for e in entries if "recording" in e.details
        }
        actors = {e.actor.partition(":")[2] for e in entries if e.actor.startswith("device:")}
        found_devices = (
            {r.id: r for r in await scope.all(devices, devices.c.id.in_(names | actors))}
            if names | actors else {}
        )
        keys = (
            {r.object_key: r for r in await scope.all(segments, segments.c.object_key.in_(names))}
            if names else {}
        )
        wanted = names | {r.recording_id for r in keys.values()}
        found_recordings = (
            {r.id: r for r in await scope.all(recordings, recordings.c.id.in_(wanted))}
            if wanted else {}
        )
        return cls(scope.tenant_id, people, found_devices, found_recordings, keys)

    def person(self, user_id: str) -> Named | None:
        row = self.people.get(user_id)
        return Named(person_label(row), f"/employees/{user_id}") if row is not None else None

    def actor(self, actor: str) -> Named:
        kind, _, ident = actor.partition(":")
        if kind == "user" and (who := self.person(ident)) is not None:
            return who
        if kind == "device" and ident in self.devices:
            return Named(self._device(self.devices[ident]), f"/admin/devices#device-{ident}")
        return Named(actor)

    def _device(self, row: Any) -> str:
        owner = self.people.get(row.user_id)
        return f"device {row.name}" + (f" of {person_label(owner)}" if owner else "")

    def recording(self, recording_id: str) -> Named:
        row = self.recordings.get(recording_id)
        if row is None:
            return Named(f"recording {recording_id}")
        owner = self.people.get(row.user_id)
        whose = person_label(owner) if owner is not None else "a person no longer here"
        return Named(f"recording of {whose}", f"/recordings/{recording_id}")

    def about(self, entry: Entry) -> Named:
        """What an entry is about: its target in words."""
        target = entry.target
        if target == self.tenant_id:
            return Named("the organisation")
        if (who := self.person(target)) is not None:
            return who
        if target in self.recordings:
            return self.recording(target)
        if target in self.devices:
            row = self.devices[target]
            return Named(self._device(row), f"/admin/devices#device-{target}")
        if target in self.keys:
            segment = self.keys[target]
            named = self.recording(segment.recording_id)
            return Named(f"segment {segment.seq} of {named.text}", named.link)
        return Named(target)

    def details(self, details: dict[str, Any]) -> dict[str, Any]:
        """An entry's details with the people and recordings they name in words."""
        shown: dict[str, Any] = {}
        for key, value in details.items():
            if isinstance(value, str) and (who := self.person(value)) is not None:
                shown[key] = who.text
            elif isinstance(value, str) and value in self.recordings:
                shown[key] = self.recording(value).text
            else:
                shown[key] = value
        return shown
