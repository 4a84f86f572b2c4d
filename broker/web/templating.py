"""The pages' Jinja2 environment, made once at app start and held under `TEMPLATES`.

The templates are files in `broker/web/templates/`, autoescaped: every value is escaped unless
it is MarkupSafe's `Markup` (made only for the QR code's SVG, by segno).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import jinja2


def when(value: datetime | None) -> str:
    """A UTC timestamp as people read it (every page says times are UTC)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def details(value: Mapping[str, Any]) -> str:
    """An audit entry's details on one line, keys sorted."""
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))


def environment() -> jinja2.Environment:
    """The pages' templates, made once at app start (the app holds it under `TEMPLATES`)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("broker.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        auto_reload=False,
    )
    env.filters["when"] = when
    env.filters["details"] = details
    return env
