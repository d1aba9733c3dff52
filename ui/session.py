"""Who is signed in to this browser tab, for every console page.

The sign-in page stores the user in NiceGUI's per-browser `app.storage.user` (server-side, keyed by a signed
cookie); pages receive a `SignedInUser` from the router and never read the storage themselves, so page logic
is testable with any user.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.auth.roles import Role


@dataclass(frozen=True)
class SignedInUser:
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """What workflow Updates record as `by`: the user's own name."""
        return self.name

    def may(self, required: Role) -> bool:
        return self.role.may(required)

    @property
    def may_act(self) -> bool:
        """Responders and admins act on incidents; viewers read."""
        return self.may(Role.RESPONDER)
