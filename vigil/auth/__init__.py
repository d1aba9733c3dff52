"""Users, roles, passwords, API tokens and sign-in (local users file, optional OIDC)."""
