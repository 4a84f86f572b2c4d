"""Typed keys of what the app holds: the services (opened in `broker.app`'s cleanup_ctx, one
object that handlers take what they need from) and this API's OpenAPI document."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from broker.identity import Principal
from broker.services import Services

SERVICES = web.AppKey("services", Services)
OPENAPI = web.AppKey("openapi", dict[str, Any])


class Drain:
    """Whether this replica is draining: set once, by the stop signal (`broker.web.serving`);
    `/healthz` (readiness) then answers 503."""

    def __init__(self) -> None:
        self.draining = False


DRAIN = web.AppKey("drain", Drain)
TEMPLATES = web.AppKey("templates", jinja2.Environment)  # the pages' (broker.web.templating)
# The request's verified caller, once the route's guard has verified it: an error page then
# keeps the signed-in frame (`broker.web.pages.html.html_errors`).
PRINCIPAL = web.RequestKey("principal", Principal)
