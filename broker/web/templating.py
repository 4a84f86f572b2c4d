"""The pages' Jinja2 environment, made once at app start and held under `TEMPLATES`.

The templates are files in `broker/web/templates/`, autoescaped: every value is escaped unless
it is MarkupSafe's `Markup` (made only for the QR code's SVG, by segno, and the `<time>`
elements `moment` makes of a timestamp and the zone's name).

Times are shown in the viewer's zone (`broker.web.pages.zone` decides it per request and
sets it here with `use_zone`; a context variable, so each request task has its own), with
the UTC time on hover.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from typing import Any

import jinja2
from markupsafe import Markup, escape

_ZONE: ContextVar[tzinfo] = ContextVar("page_zone", default=UTC)
# Where the zone came from: "tenant", "browser" or "default" (zone.js reloads a page shown in
# the default zone once it has told the broker the browser's).
_SOURCE: ContextVar[str] = ContextVar("page_zone_source", default="default")
_FORMAT = "%Y-%m-%d %H:%M:%S"


def use_zone(zone: tzinfo, source: str = "default") -> None:
    """The zone this request's pages show times in (UTC unless set)."""
    _ZONE.set(zone)
    _SOURCE.set(source)


def zone_source() -> str:
    return _SOURCE.get()


def current_zone() -> tzinfo:
    return _ZONE.get()


def zone_name(zone: tzinfo | None = None) -> str:
    zone = zone or _ZONE.get()
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")


def when(value: datetime | None) -> str:
    """A timestamp as people read it, in the request's zone."""
    return value.astimezone(_ZONE.get()).strftime(_FORMAT) if value else "—"


def utc_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime(_FORMAT) + " UTC"


def moment(value: datetime | None) -> Markup:
    """A `<time>` element: the time in the request's zone, the UTC time on hover."""
    if value is None:
        return Markup("—")
    iso = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, utc_text(value), escape(when(value))
    )


def clock(value: datetime | None) -> Markup:
    """A `<time>` element with the wall-clock time only ("16:03") when it is today in the
    request's zone, else the date too; the UTC time on hover."""
    if value is None:
        return Markup("—")
    local = value.astimezone(_ZONE.get())
    today = datetime.now(_ZONE.get()).date()
    shown = local.strftime("%H:%M" if local.date() == today else "%Y-%m-%d %H:%M")
    iso = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, utc_text(value), escape(shown)
    )


def hours(value: datetime | None) -> Markup:
    """A `<time>` element with the wall-clock time to the second ("16:03:27"), for the end
    of a span that starts the same day; the UTC time on hover."""
    if value is None:
        return Markup("—")
    iso = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    shown = value.astimezone(_ZONE.get()).strftime("%H:%M:%S")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, utc_text(value), escape(shown)
    )


def same_day(first: datetime, last: datetime) -> bool:
    """Whether two moments fall on one day in the request's zone."""
    zone = _ZONE.get()
    return first.astimezone(zone).date() == last.astimezone(zone).date()


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
    env.filters["moment"] = moment
    env.filters["clock"] = clock
    env.filters["hours"] = hours
    env.globals["same_day"] = same_day
    env.globals["zone_name"] = zone_name
    env.globals["zone_source"] = zone_source
    env.filters["details"] = details
    return env
