"""Console sign-in with a generic OpenID Connect provider: authorization-code flow with PKCE, state and nonce.

The console mounts two steps (it keeps one `OidcProvider` per process):

1. sign-in button: `url, pending = await provider.start_sign_in(redirect_uri)`; keep `pending.model_dump(mode="json")`
   in the session (`app.storage.user["oidc_pending"]`), then redirect the browser to `url`;
2. callback route (`redirect_uri`): `identity = await provider.finish_sign_in(PendingSignIn.model_validate(saved),
   state=..., code=..., error=...)` with the query parameters the provider sent; drop the saved value whatever
   happens (it is single-use), then store `session_values(identity.name, identity.role, "oidc")`.

What is checked, as a relying party must (OpenID Connect Core 1.0, 3.1.3.7): the provider's discovery document
names the configured issuer; the callback's state matches the one saved (constant-time) and is at most
`PENDING_MAX_AGE_SECONDS` old; the code is exchanged at the token endpoint with the client secret and the PKCE
verifier; the ID token is signed by a key of the provider's JWKS with an asymmetric algorithm (RS*, PS*, ES*;
never `none` or a shared-secret HMAC), and its `iss`, `aud` (and `azp` with several audiences), `exp`, `iat`
and `nonce` are right. An unknown key id re-reads the JWKS once (key rotation).

The role comes from the claim VIGIL_OIDC_ROLE_CLAIM (a role name or a list of them: the highest known one
wins), else VIGIL_OIDC_DEFAULT_ROLE. The actor name is `oidc:<preferred_username | email | sub>`, like Slack
actors are `slack:<user id>`, so an OIDC user never passes for a local user of the same name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import unicodedata
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import jwt
from pydantic import BaseModel, ConfigDict, ValidationError

from vigil.auth.models import AuthError
from vigil.auth.roles import Role
from vigil.settings import Settings

PENDING_MAX_AGE_SECONDS = 600.0
"""A sign-in must come back from the provider within this long."""
METADATA_MAX_AGE_SECONDS = 3600.0
CLOCK_SKEW_SECONDS = 60
SCOPES = "openid profile email"
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
MAX_NAME_LENGTH = 190


class OidcError(AuthError):
    """The sign-in failed; the message says why (safe to show: it holds no secret)."""


class ProviderMetadata(BaseModel):
    """The parts of the discovery document (`/.well-known/openid-configuration`) Vigil uses."""

    model_config = ConfigDict(extra="ignore")

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_signing_alg_values_supported: list[str] = ["RS256"]
    token_endpoint_auth_methods_supported: list[str] = ["client_secret_basic"]


class PendingSignIn(BaseModel):
    """What the console keeps in the session between the redirect and the callback (secret: never render it)."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    started_at: float


class OidcIdentity(BaseModel):
    name: str
    role: Role
    issuer: str
    subject: str
    email: str | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    """S256 code challenge of a PKCE verifier (RFC 7636 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode()).digest())


def role_from_claims(claims: dict[str, Any], claim: str, default: Role) -> Role:
    """The highest known role the claim names (a string or a list), else `default`."""
    value = claims.get(claim)
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    roles = [Role(name) for name in names if isinstance(name, str) and name in {r.value for r in Role}]
    return max(roles, key=lambda role: role.rank) if roles else default


def _display_name(claims: dict[str, Any]) -> str:
    for key in ("preferred_username", "email", "sub"):
        value = claims.get(key)
        if isinstance(value, str):
            cleaned = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C").strip()
            if cleaned:
                return f"oidc:{cleaned[:MAX_NAME_LENGTH]}"
    raise OidcError("the ID token names no user (no preferred_username, email or sub)")


class OidcProvider:
    """The configured provider; caches its discovery document and keys. `http` lets tests and the console share
    a client; without it each call opens its own."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient | None = None) -> None:
        if not settings.oidc_issuer or not settings.oidc_client_id:
            raise OidcError("OIDC is not configured: set VIGIL_OIDC_ISSUER and VIGIL_OIDC_CLIENT_ID")
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self._client_secret = settings.oidc_client_secret
        self._role_claim = settings.oidc_role_claim
        self._default_role = settings.oidc_default_role
        self._http = http
        self._metadata: tuple[float, ProviderMetadata] | None = None
        self._jwks: jwt.PyJWKSet | None = None

    async def _get(self, url: str) -> dict[str, Any]:
        try:
            if self._http is not None:
                response = await self._http.get(url)
            else:
                async with httpx.AsyncClient(timeout=10.0) as http:
                    response = await http.get(url)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the OIDC provider did not answer {url}: {exc}") from None
        if not isinstance(data, dict):
            raise OidcError(f"the OIDC provider's {url} is not a JSON object")
        return data

    async def metadata(self) -> ProviderMetadata:
        cached = self._metadata
        if cached is not None and time.monotonic() - cached[0] < METADATA_MAX_AGE_SECONDS:
            return cached[1]
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            metadata = ProviderMetadata.model_validate(await self._get(url))
        except ValidationError as exc:
            raise OidcError(f"{url} is not an OpenID Connect discovery document: {exc.errors()[0]['msg']}") from None
        if metadata.issuer.rstrip("/") != self.issuer:
            raise OidcError(f"{url} names issuer {metadata.issuer!r}, not the configured {self.issuer!r}")
        self._metadata = (time.monotonic(), metadata)
        return metadata

    async def start_sign_in(self, redirect_uri: str) -> tuple[str, PendingSignIn]:
        """The provider's authorization URL to send the browser to, and what to keep until the callback."""
        metadata = await self.metadata()
        pending = PendingSignIn(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(64),
            redirect_uri=redirect_uri,
            started_at=time.time(),
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": SCOPES,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": pkce_challenge(pending.code_verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}", pending

    async def finish_sign_in(
        self, pending: PendingSignIn, *, state: str | None, code: str | None, error: str | None = None
    ) -> OidcIdentity:
        """The signed-in identity from the callback's query parameters, or `OidcError` saying why not."""
        if error:
            raise OidcError(f"the OIDC provider refused the sign-in: {error[:200]}")
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("the sign-in's state does not match: start the sign-in again")
        if time.time() - pending.started_at > PENDING_MAX_AGE_SECONDS:
            raise OidcError("the sign-in took too long: start it again")
        if not code:
            raise OidcError("the OIDC provider sent no authorization code")
        metadata = await self.metadata()
        id_token = await self._exchange(metadata, pending, code)
        claims = await self._verify(metadata, id_token, pending.nonce)
        email = claims.get("email")
        return OidcIdentity(
            name=_display_name(claims),
            role=role_from_claims(claims, self._role_claim, self._default_role),
            issuer=self.issuer,
            subject=str(claims["sub"]),
            email=email if isinstance(email, str) else None,
        )

    async def _exchange(self, metadata: ProviderMetadata, pending: PendingSignIn, code: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        secret = self._client_secret.get_secret_value() if self._client_secret is not None else None
        headers: dict[str, str] = {}
        if secret is None:
            form["client_id"] = self.client_id
        elif "client_secret_basic" in metadata.token_endpoint_auth_methods_supported:
            # RFC 6749 2.3.1: id and secret are form-encoded before they are joined and base64-ed
            credentials = f"{quote_plus(self.client_id)}:{quote_plus(secret)}".encode()
            headers["Authorization"] = f"Basic {base64.b64encode(credentials).decode()}"
        else:
            form |= {"client_id": self.client_id, "client_secret": secret}
        try:
            if self._http is not None:
                response = await self._http.post(metadata.token_endpoint, data=form, headers=headers)
            else:
                async with httpx.AsyncClient(timeout=10.0) as http:
                    response = await http.post(metadata.token_endpoint, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise OidcError(f"the OIDC token endpoint did not answer: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200:
            reason = body.get("error", "") if isinstance(body, dict) else ""
            raise OidcError(f"the OIDC token endpoint refused the code ({response.status_code} {reason})".strip())
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(id_token, str):
            raise OidcError("the OIDC token endpoint sent no ID token")
        return id_token

    async def _key(self, metadata: ProviderMetadata, kid: str | None) -> jwt.PyJWK:
        for refresh in (False, True):
            if self._jwks is None or refresh:
                try:
                    self._jwks = jwt.PyJWKSet.from_dict(await self._get(metadata.jwks_uri))
                except jwt.PyJWKSetError as exc:
                    raise OidcError(f"the OIDC provider's keys are unusable: {exc}") from None
            keys = [key for key in self._jwks.keys if kid is None or key.key_id == kid]
            if len(keys) == 1:
                return keys[0]
        raise OidcError("the ID token is signed by a key the OIDC provider does not publish")

    async def _verify(self, metadata: ProviderMetadata, id_token: str, nonce: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.InvalidTokenError as exc:
            raise OidcError(f"the ID token is malformed: {exc}") from None
        algorithm = header.get("alg")
        allowed = ASYMMETRIC_ALGORITHMS & set(metadata.id_token_signing_alg_values_supported)
        if algorithm not in allowed:
            raise OidcError(f"the ID token's algorithm {algorithm!r} is not accepted (only {sorted(allowed)})")
        key = await self._key(metadata, header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[algorithm],
                audience=self.client_id,
                issuer=metadata.issuer,
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            raise OidcError(f"the ID token is not valid: {exc}") from None
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce.encode(), nonce.encode()):
            raise OidcError("the ID token's nonce does not match this sign-in")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.client_id:
            raise OidcError("the ID token has several audiences and is not authorized for this client (azp)")
        return claims
