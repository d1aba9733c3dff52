"""OIDC sign-in (`vigil.auth.oidc`) against a local provider that checks what a real one checks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pydantic import SecretStr

from tests.fakes.oidc_provider import FakeOidcProvider, FakeUser, new_rsa_key
from vigil.auth.oidc import OidcError, OidcIdentity, OidcProvider, PendingSignIn, role_from_claims
from vigil.auth.roles import Role
from vigil.settings import Settings

CLIENT_ID = "vigil-console"
CLIENT_SECRET = "s3cret with spaces&symbols"
REDIRECT = "http://127.0.0.1:8080/auth/oidc/callback"


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[REDIRECT]) as fake:
        yield fake


@pytest.fixture
def fake(provider: FakeOidcProvider) -> FakeOidcProvider:
    """The module's provider, reset for each test."""
    provider.user = FakeUser(sub="u-1", claims={"preferred_username": "ana", "email": "ana@example.com"})
    provider.id_token_overrides = {}
    provider.sign_with = None
    provider.algorithm_header = None
    provider.token_requests.clear()
    provider.auth_methods = ["client_secret_basic", "client_secret_post"]
    return provider


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        yield client


def settings_for(fake: FakeOidcProvider, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "state_dir": tmp_path,
        "oidc_issuer": fake.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": SecretStr(CLIENT_SECRET),
    }
    return Settings.model_validate(values | overrides)


async def browser(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    """What the browser brings back to the callback: the provider's redirect's query parameters."""
    response = await http.get(url, follow_redirects=False)
    assert response.status_code in (302, 307), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def sign_in(oidc: OidcProvider, http: httpx.AsyncClient) -> tuple[OidcIdentity, PendingSignIn, dict[str, str]]:
    url, pending = await oidc.start_sign_in(REDIRECT)
    callback = await browser(http, url)
    identity = await oidc.finish_sign_in(pending, state=callback.get("state"), code=callback.get("code"))
    return identity, pending, callback


async def test_sign_in_with_role_claim(fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path) -> None:
    fake.user.claims["vigil_role"] = ["viewer", "responder", "unknown"]
    oidc = OidcProvider(settings_for(fake, tmp_path), http)
    url, pending = await oidc.start_sign_in(REDIRECT)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0] != pending.code_verifier
    assert query["state"] == [pending.state]
    assert query["nonce"] == [pending.nonce]
    assert CLIENT_SECRET not in url

    callback = await browser(http, url)
    identity = await oidc.finish_sign_in(pending, state=callback["state"], code=callback["code"])
    assert identity.name == "oidc:ana"
    assert identity.role is Role.RESPONDER
    assert (identity.subject, identity.email, identity.issuer) == ("u-1", "ana@example.com", fake.issuer)
    assert fake.token_requests == ["ok"]

    # the code is single-use: replaying the callback fails at the provider
    with pytest.raises(OidcError, match="refused the code"):
        await oidc.finish_sign_in(pending, state=callback["state"], code=callback["code"])
    assert fake.token_requests == ["ok", "invalid_grant"]


async def test_default_role_and_name_fallbacks(fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path) -> None:
    fake.user = FakeUser(sub="a1b2")
    identity, _, _ = await sign_in(OidcProvider(settings_for(fake, tmp_path), http), http)
    assert (identity.name, identity.role) == ("oidc:a1b2", Role.VIEWER)
    fake.user = FakeUser(sub="a1b2", claims={"email": "ops@example.com", "groups": "admin"})
    settings = settings_for(fake, tmp_path, oidc_default_role="responder", oidc_role_claim="groups")
    identity, _, _ = await sign_in(OidcProvider(settings, http), http)
    assert (identity.name, identity.role) == ("oidc:ops@example.com", Role.ADMIN)


def test_role_from_claims() -> None:
    assert role_from_claims({"r": "admin"}, "r", Role.VIEWER) is Role.ADMIN
    assert role_from_claims({"r": ["viewer", "admin", "responder"]}, "r", Role.VIEWER) is Role.ADMIN
    assert role_from_claims({"r": ["root", 3, None]}, "r", Role.RESPONDER) is Role.RESPONDER
    assert role_from_claims({"r": {"admin": True}}, "r", Role.VIEWER) is Role.VIEWER
    assert role_from_claims({}, "r", Role.VIEWER) is Role.VIEWER


async def test_the_callback_must_belong_to_this_sign_in(
    fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    oidc = OidcProvider(settings_for(fake, tmp_path), http)
    url, pending = await oidc.start_sign_in(REDIRECT)
    callback = await browser(http, url)
    with pytest.raises(OidcError, match="state does not match"):
        await oidc.finish_sign_in(pending, state="forged", code=callback["code"])
    with pytest.raises(OidcError, match="state does not match"):
        await oidc.finish_sign_in(pending, state=None, code=callback["code"])
    with pytest.raises(OidcError, match="refused the sign-in: access_denied"):
        await oidc.finish_sign_in(pending, state=callback["state"], code=None, error="access_denied")
    stale = pending.model_copy(update={"started_at": time.time() - 3600})
    with pytest.raises(OidcError, match="took too long"):
        await oidc.finish_sign_in(stale, state=callback["state"], code=callback["code"])
    assert fake.token_requests == []  # nothing reached the token endpoint

    # another sign-in's verifier (a code injected into this session) fails PKCE at the provider
    _, other = await oidc.start_sign_in(REDIRECT)
    swapped = pending.model_copy(update={"code_verifier": other.code_verifier})
    with pytest.raises(OidcError, match="refused the code"):
        await oidc.finish_sign_in(swapped, state=callback["state"], code=callback["code"])
    assert fake.token_requests == ["invalid_grant"]


async def test_the_provider_checks_client_and_redirect(
    fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    wrong_secret = OidcProvider(settings_for(fake, tmp_path, oidc_client_secret=SecretStr("nope")), http)
    url, pending = await wrong_secret.start_sign_in(REDIRECT)
    callback = await browser(http, url)
    with pytest.raises(OidcError, match="401 invalid_client"):
        await wrong_secret.finish_sign_in(pending, state=callback["state"], code=callback["code"])

    oidc = OidcProvider(settings_for(fake, tmp_path), http)
    url, _ = await oidc.start_sign_in("http://evil.example/callback")
    assert (await http.get(url, follow_redirects=False)).status_code == 400  # unregistered redirect URI

    url, pending = await oidc.start_sign_in(REDIRECT)
    callback = await browser(http, url)
    moved = pending.model_copy(update={"redirect_uri": REDIRECT + "2"})
    with pytest.raises(OidcError, match="refused the code"):
        await oidc.finish_sign_in(moved, state=callback["state"], code=callback["code"])


async def test_client_secret_in_the_form_when_the_provider_wants_it(
    fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    fake.auth_methods = ["client_secret_post"]
    identity, _, _ = await sign_in(OidcProvider(settings_for(fake, tmp_path), http), http)
    assert identity.name == "oidc:ana"
    fake.auth_methods = ["client_secret_basic"]
    identity, _, _ = await sign_in(OidcProvider(settings_for(fake, tmp_path), http), http)
    assert identity.name == "oidc:ana"
    assert fake.token_requests == ["ok", "ok"]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"aud": "someone-else"}, "not valid: Audience doesn't match"),
        ({"iss": "https://evil.example"}, "not valid: Invalid issuer"),
        ({"exp": int(time.time()) - 3600}, "not valid: Signature has expired"),
        ({"nonce": "replayed"}, "nonce does not match"),
        ({"aud": [CLIENT_ID, "other"], "azp": "other"}, "several audiences"),
    ],
)
async def test_id_token_claims_are_verified(
    fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path, tamper: dict[str, object], message: str
) -> None:
    fake.id_token_overrides = tamper
    with pytest.raises(OidcError, match=message):
        await sign_in(OidcProvider(settings_for(fake, tmp_path), http), http)


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        ("other_key", "not valid: Signature verification failed"),
        ("none", "algorithm 'none' is not accepted"),
        ("HS256", "algorithm 'HS256' is not accepted"),
    ],
)
async def test_id_token_signature_is_verified(
    fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path, forge: str, message: str
) -> None:
    if forge == "other_key":
        fake.sign_with = new_rsa_key()
    else:
        fake.algorithm_header = forge
    with pytest.raises(OidcError, match=message):
        await sign_in(OidcProvider(settings_for(fake, tmp_path), http), http)


async def test_key_rotation_rereads_the_keys(fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path) -> None:
    oidc = OidcProvider(settings_for(fake, tmp_path), http)
    assert (await sign_in(oidc, http))[0].name == "oidc:ana"
    old_key, old_kid = fake.key, fake.kid
    fake.key, fake.kid = new_rsa_key(), "key-2"
    try:
        assert (await sign_in(oidc, http))[0].name == "oidc:ana"  # the cached JWKS lacks key-2: read again
    finally:
        fake.key, fake.kid = old_key, old_kid


async def test_discovery_must_name_the_configured_issuer(
    fake: FakeOidcProvider, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    other = fake.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(OidcError, match="names issuer"):
        await OidcProvider(settings_for(fake, tmp_path, oidc_issuer=other), http).start_sign_in(REDIRECT)
    with pytest.raises(OidcError, match="did not answer"):
        await OidcProvider(settings_for(fake, tmp_path, oidc_issuer=f"{fake.issuer}/nope"), http).metadata()
    with pytest.raises(OidcError, match="not configured"):
        OidcProvider(Settings.model_validate({"state_dir": tmp_path}), http)
