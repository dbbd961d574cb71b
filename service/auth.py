"""Bearer authentication (off by default): a tokens file, or an OAuth 2.1 resource server on JWTs.

Both are the MCP SDK's ``TokenVerifier``: the SDK's ``BearerAuthBackend`` and
``RequireAuthMiddleware`` answer 401 with ``WWW-Authenticate: Bearer ...``, and with a
resource URL it serves the RFC 9728 protected-resource metadata. What the tools need from
here is the caller's subject, which makes the cart the shopper's (see ``service.sessions.signed_in``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import jwt
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, RequireAuthMiddleware
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings

from service.config import Settings

logger = logging.getLogger(__name__)

TOKENS_FILE_CLIENT = "tokens-file"
JWKS_TIMEOUT_SECONDS = 5.0
JWKS_CACHE_SECONDS = 300
CLOCK_SKEW_SECONDS = 30
# Asymmetric algorithms only: a JWKS publishes public keys, and an HMAC "alg" would turn one into a secret.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_SHA256_HEX = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


class TokensFileError(ValueError):
    """The tokens file cannot be read or has a bad line; the message names the line."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def parse_tokens_file(text: str, source: str = "tokens file") -> list[tuple[bytes, str]]:
    """``(sha256 digest, subject)`` per line ``<token> <subject>`` or ``sha256:<hex> <subject>``; ``#`` comments."""
    entries: list[tuple[bytes, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[1].strip():
            raise TokensFileError(f"{source}, line {number}: expected '<token> <subject>' or 'sha256:<hex> <subject>'")
        secret, subject = parts[0], parts[1].strip()
        hashed = _SHA256_HEX.match(secret)
        if hashed:
            entries.append((bytes.fromhex(hashed.group(1)), subject))
        elif secret.startswith("sha256:"):
            raise TokensFileError(f"{source}, line {number}: 'sha256:' must be followed by 64 hex digits")
        else:
            entries.append((_digest(secret), subject))
    return entries


class TokensFileVerifier(TokenVerifier):
    """Static bearer tokens from ``WEFT_AUTH_TOKENS_FILE``, reread by ``reload()`` (on SIGHUP).

    Only SHA-256 digests are kept, and the presented token's digest is compared with every
    entry by ``hmac.compare_digest`` without stopping at a match, so timing says nothing
    about which token, or how much of one, was right.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries = self._read()
        logger.info("Authentication: %d token(s) from %s", len(self._entries), path)

    def _read(self) -> list[tuple[bytes, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TokensFileError(f"cannot read WEFT_AUTH_TOKENS_FILE {self.path}: {exc.strerror}") from exc
        return parse_tokens_file(text, str(self.path))

    def reload(self) -> bool:
        """Reread the file; on any error keep the tokens in use (a broken edit must not lock everyone out)."""
        try:
            entries = self._read()
        except TokensFileError as exc:
            logger.error("Tokens file not reloaded, keeping %d token(s): %s", len(self._entries), exc)
            return False
        self._entries = entries
        logger.info("Tokens file reloaded: %d token(s)", len(entries))
        return True

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = _digest(token)
        subject: str | None = None
        for digest, entry_subject in self._entries:
            if hmac.compare_digest(presented, digest) and subject is None:
                subject = entry_subject
        if subject is None:
            return None
        return AccessToken(token=token, client_id=TOKENS_FILE_CLIENT, scopes=[], subject=subject)


class JwtVerifier(TokenVerifier):
    """An OAuth 2.1 resource server: JWTs signed by a key in the issuer's JWKS, for this audience.

    PyJWT checks signature, ``exp``/``nbf``/``iat``, ``iss`` and ``aud``; its ``PyJWKClient``
    caches the key set and refetches it (at most every 30 s) when an unknown ``kid`` appears.
    The fetch is blocking, so it runs in a thread.
    """

    def __init__(self, jwks_url: str, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks = jwt.PyJWKClient(
            jwks_url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=JWKS_TIMEOUT_SECONDS
        )

    def decode(self, token: str) -> dict[str, Any]:
        """The verified claims; raises ``jwt.PyJWTError`` for any token that must be refused."""
        key = self.jwks.get_signing_key_from_jwt(token)
        algorithm = key.algorithm_name
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise jwt.InvalidAlgorithmError(f"key algorithm {algorithm} is not accepted")
        return jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=self.audience,
            issuer=self.issuer,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            claims = await anyio.to_thread.run_sync(self.decode, token)
        except jwt.PyJWTError as exc:
            logger.info("Bearer token refused: %s", type(exc).__name__)
            return None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            return None
        scope = claims.get("scope")
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id") or claims.get("azp") or subject),
            scopes=scope.split() if isinstance(scope, str) else [],
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=subject,
            claims={"iss": claims["iss"]},
        )


@dataclass(frozen=True, slots=True)
class AuthSetup:
    """What ``MCPServer(token_verifier=..., auth=...)`` takes."""

    verifier: TokenVerifier
    settings: AuthSettings


def build_auth(settings: Settings) -> AuthSetup | None:
    """The verifier and the SDK's auth settings for ``settings.token_kind``; ``None`` when auth is off
    (``WEFT_AUTH_MODE=off``, or no tokens file or JWKS)."""
    if settings.auth_mode == "off":
        return None
    if settings.token_kind == "tokens_file":
        assert settings.auth_tokens_file is not None
        # The SDK wants an issuer URL, though it only uses it for metadata this mode does not serve.
        local = AuthSettings.model_validate({"issuer_url": "http://localhost", "resource_server_url": None})
        return AuthSetup(TokensFileVerifier(settings.auth_tokens_file), local)
    if settings.token_kind == "jwt":
        assert settings.auth_jwks_url and settings.auth_issuer and settings.auth_audience
        verifier = JwtVerifier(settings.auth_jwks_url, settings.auth_issuer, settings.auth_audience)
        oauth = AuthSettings.model_validate(
            {
                "issuer_url": settings.auth_issuer,  # validated from text, as the metadata must repeat it
                "resource_server_url": settings.auth_audience,
                "validate_token_resource": False,  # the verifier checks the audience itself
            }
        )
        return AuthSetup(verifier, oauth)
    return None


def caller_subject(http_request: Any) -> str | None:
    """The authenticated subject of this call (``None`` with auth off), from the request the SDK passes on."""
    user = getattr(http_request, "scope", {}).get("user") if http_request is not None else None
    token = user.access_token if isinstance(user, AuthenticatedUser) else get_access_token()
    return token.subject if token is not None else None


class AnonymousAllowed:
    """``WEFT_AUTH_MODE=optional`` at the MCP endpoint: a request without an ``Authorization`` header goes on as an
    anonymous shopper; one with the header is the SDK's ``RequireAuthMiddleware``'s to judge, so a bad or
    expired token is still 401 with ``WWW-Authenticate`` (a client that sent a token meant to be someone)."""

    def __init__(self, required: RequireAuthMiddleware) -> None:
        self.required = required

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if any(name == b"authorization" for name, _ in scope.get("headers", ())):
            await self.required(scope, receive, send)
        else:
            await self.required.app(scope, receive, send)


def allow_anonymous(app: Any, path: str) -> None:
    """Make the SDK app's ``path`` route take anonymous calls too (optional mode). The SDK guards the route with
    ``RequireAuthMiddleware`` and nothing else; if a future SDK does otherwise, refuse to start rather than
    serve a route whose guard is unknown."""
    for route in getattr(app, "routes", ()):
        if getattr(route, "path", None) == path and isinstance(route.app, RequireAuthMiddleware):
            route.app = AnonymousAllowed(route.app)
            return
    raise RuntimeError(f"WEFT_AUTH_MODE=optional: the MCP SDK's {path} route is not guarded as expected")
