"""Who is calling and in what role: the bottom of the broker, importing none of it.

`Principal` is what a verified token says (`broker.auth.tokens` signs and verifies it);
`Role` is a person's role in their tenant. Every layer above may take them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

Audience = Literal["device", "user"]


class Role(StrEnum):
    EMPLOYEE = "employee"
    MANAGER = "manager"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling, as the verified token says: the only source of tenant and role."""

    kind: Audience
    subject: str  # device id or user id
    tenant_id: str
    user_id: str
    role: str
    # User sessions only: the session (refresh family) and the user's session version.
    session_id: str = ""
    session_version: int = 0
    # When the verified token expires (Unix time; 0 for a principal not read from a token).
    expires_at: int = field(default=0, compare=False)
