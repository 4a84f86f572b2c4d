"""A migration module of the broker, loaded by its file (migrations are not a package), so a
test can read the lists a migration acted on."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from broker.db import migrate


def load_migration(filename: str) -> ModuleType:
    """`broker/migrations/versions/<filename>`, imported afresh."""
    path = migrate.MIGRATIONS / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"migration_{path.stem}", path)
    assert spec is not None, path
    assert spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def head_revision() -> str:
    """The newest migration's revision id (what `migrate.upgrade` brings a database to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head()
    assert head is not None
    return head
