"""Every route of the tenant admin's console is for admins only: a route added under
`/admin/` or `/api/v1/admin/` without `roles=ADMIN` would be open to every signed-in person
(the access matrix checks the roles routes declare, so it cannot see a missing one)."""

from __future__ import annotations

from broker.web.routes import ADMIN, ROUTES


def test_every_admin_route_is_for_admins_only() -> None:
    admin = [r for r in ROUTES if r.path.startswith(("/admin/", "/api/v1/admin/"))]
    assert len(admin) >= 20, "the console's routes are found"
    open_ = [f"{r.method} {r.path}" for r in admin if r.auth != "user" or r.roles != ADMIN]
    assert open_ == []
