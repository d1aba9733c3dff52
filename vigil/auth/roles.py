"""Who may do what: viewers read, responders act on incidents, admins also manage users."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    RESPONDER = "responder"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def may(self, required: Role) -> bool:
        """True when this role includes everything `required` may do."""
        return self.rank >= required.rank


_RANKS = {Role.VIEWER: 0, Role.RESPONDER: 1, Role.ADMIN: 2}
