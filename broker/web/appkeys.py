"""Typed keys of everything the app holds; resources are opened in `broker.app`'s cleanup_ctx."""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from broker.auth.devices import DeviceAuth
from broker.auth.login import LoginService
from broker.auth.sessions import UserSessions
from broker.auth.tokens import TokenSigner
from broker.clock import Clock
from broker.db.database import Database
from broker.devices.ratelimit import DeviceLimits
from broker.recordings.service import RecordingService
from broker.recordings.viewing import ViewingService
from broker.settings import Settings
from broker.storage.service import StorageAccess

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
DATABASE = web.AppKey("database", Database)
SIGNER = web.AppKey("signer", TokenSigner)
DEVICES = web.AppKey("devices", DeviceAuth)
RECORDINGS = web.AppKey("recordings", RecordingService)
SESSIONS = web.AppKey("sessions", UserSessions)
LOGIN = web.AppKey("login", LoginService)
VIEWING = web.AppKey("viewing", ViewingService)
OPENAPI = web.AppKey("openapi", dict[str, Any])
STORAGE = web.AppKey("storage", StorageAccess)
DEVICE_LIMITS = web.AppKey("device_limits", DeviceLimits)
TEMPLATES = web.AppKey("templates", jinja2.Environment)  # the pages' (broker.web.pages.html)
