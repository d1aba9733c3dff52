"""A fake OpenID Connect provider over real HTTP, checking what a real one checks, for `vigil.auth.oidc`.

Discovery (`/.well-known/openid-configuration`), JWKS (`/jwks`), `/authorize` and `/token`. `/authorize`
stands for the user's sign-in page: it signs in `user` (set by the test) at once and redirects to the
client's redirect URI with a code and the state, after checking the client id, the registered redirect URI, the
`openid` scope and an S256 PKCE challenge. `/token` checks the client secret (HTTP Basic or form), that the
code exists, is unexpired and unused (single-use: a second use fails and revokes nothing else), that the
redirect URI matches the one of the authorization and that the PKCE verifier hashes to the challenge; it then
answers an RS256 ID token carrying the nonce, signed with a key generated per fake (kid `key-1`).

To test what a relying party must refuse: `id_token_overrides` changes claims of the next ID tokens (wrong
`aud`, `iss`, expired `exp`, ...), `sign_with` signs them with another key (same kid), `algorithm_header`
forges the header's `alg`, `auth_methods` limits how the client may authenticate. `token_requests` records
each token request's outcome.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.server import ServedApp

CODE_LIFETIME_SECONDS = 60


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    claims: dict[str, Any]
    issued_at: float
    used: bool = False


@dataclass
class FakeUser:
    sub: str
    claims: dict[str, Any] = field(default_factory=dict)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeOidcProvider(ServedApp):
    name = "fake-oidc"

    def __init__(self, *, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = redirect_uris
        self.key = new_rsa_key()
        self.kid = "key-1"
        self.user = FakeUser(sub="u-1")
        self.id_token_overrides: dict[str, Any] = {}
        self.sign_with: rsa.RSAPrivateKey | None = None
        self.algorithm_header: str | None = None
        self.token_requests: list[str] = []
        self.auth_methods = ["client_secret_basic", "client_secret_post"]
        self._grants: dict[str, _Grant] = {}
        self._app.router.routes.extend(
            [
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
            ]
        )

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": self.auth_methods,
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return JSONResponse({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in self.redirect_uris:  # never redirect to an unregistered URI
            return JSONResponse({"error": "invalid_request", "error_description": "redirect_uri"}, status_code=400)
        problem = None
        if q.get("response_type") != "code":
            problem = "unsupported_response_type"
        elif "openid" not in q.get("scope", "").split():
            problem = "invalid_scope"
        elif q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            problem = "invalid_request"
        if problem is not None:
            return RedirectResponse(f"{redirect_uri}?{urlencode({'error': problem, 'state': q.get('state', '')})}")
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            challenge=q["code_challenge"],
            nonce=q.get("nonce"),
            claims={"sub": self.user.sub, **self.user.claims},
            issued_at=time.time(),
        )
        return RedirectResponse(f"{redirect_uri}?{urlencode({'code': code, 'state': q.get('state', '')})}")

    def _client_authenticated(self, request: Request, form: dict[str, str]) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Basic ") and "client_secret_basic" in self.auth_methods:
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return unquote_plus(user) == self.client_id and unquote_plus(password) == self.client_secret
        if "client_secret_post" not in self.auth_methods:
            return False
        return form.get("client_id") == self.client_id and form.get("client_secret") == self.client_secret

    def _refuse(self, error: str, status_code: int = 400) -> Response:
        self.token_requests.append(error)
        return JSONResponse({"error": error}, status_code=status_code)

    async def _token(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        if not self._client_authenticated(request, form):
            return self._refuse("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return self._refuse("unsupported_grant_type")
        grant = self._grants.get(form.get("code", ""))
        if grant is None or grant.used or time.time() - grant.issued_at > CODE_LIFETIME_SECONDS:
            return self._refuse("invalid_grant")
        grant.used = True
        if form.get("redirect_uri") != grant.redirect_uri:
            return self._refuse("invalid_grant")
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or challenge != grant.challenge:
            return self._refuse("invalid_grant")
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            **({"nonce": grant.nonce} if grant.nonce else {}),
            **grant.claims,
            **self.id_token_overrides,
        }
        headers = {"kid": self.kid}
        if self.algorithm_header is not None:
            id_token = _forged(claims, self.algorithm_header)
        else:
            id_token = jwt.encode(claims, self.sign_with or self.key, algorithm="RS256", headers=headers)
        self.token_requests.append("ok")
        return JSONResponse(
            {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )


def _forged(claims: dict[str, Any], algorithm: str) -> str:
    """An unsigned (`none`) or HMAC token: what an attacker could make without the provider's private key."""
    if algorithm == "none":
        return jwt.encode(claims, "", algorithm="none")
    return jwt.encode(
        claims, "a shared secret anybody could know, 32+ bytes", algorithm=algorithm, headers={"kid": "key-1"}
    )
