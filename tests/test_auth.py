"""Bearer authentication: the tokens file (constant-time, SIGHUP reload) and the OAuth 2.1 resource
server on JWTs (a JWKS served by the test), 401 answers, protected-resource metadata, and carts scoped
to the token's subject over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pydantic import ValidationError

from harness.processes import ServeProcess, free_port
from service.auth import JwtVerifier, TokensFileError, TokensFileVerifier, parse_tokens_file
from service.config import Settings
from service.sessions import session_key
from tests.jsonrpc import JSON_HEADERS, tool_call_message

OATS = "demo-market:i1702"
ISSUER = "https://issuer.test"


def new_prefix() -> str:
    return f"weft-auth-{uuid.uuid4().hex[:12]}"


def post(url: str, message: Mapping[str, Any], token: str | None = None) -> httpx.Response:
    headers = dict(JSON_HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=dict(message), headers=headers, timeout=10)


def call_ok(url: str, token: str, name: str, arguments: Mapping[str, Any], chat: str) -> dict[str, Any]:
    response = post(url, tool_call_message(name, arguments, meta={"sessionId": chat}), token)
    assert response.status_code == 200, (response.status_code, response.text)
    result = response.json()["result"]
    assert not result.get("isError"), result
    return result["structuredContent"]


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.headers["www-authenticate"].startswith("Bearer "), response.headers
    assert "invalid_token" in response.headers["www-authenticate"]
    assert "result" not in response.text


def user_key(prefix: str, subject: str, chat: str | None = None) -> str:
    """A signed-in shopper's cart key: the account cart (the default), or the cart of ``chat``
    (``WEFT_SIGNED_IN_CARTS=conversation``)."""
    digest = hashlib.sha256(subject.encode()).hexdigest()[:16]
    return f"{prefix}:cart:{{u-{digest}}}" if chat is None else f"{prefix}:cart:{{u-{digest}.{chat}}}"


# ---------------------------------------------------------------- units: tokens file, settings, key scoping


def test_tokens_file_lines() -> None:
    hashed = hashlib.sha256(b"s3cret-b").hexdigest()
    entries = parse_tokens_file(f"# comment\n\ns3cret-a alice\nsha256:{hashed} bob the builder\n")
    assert entries == [(hashlib.sha256(b"s3cret-a").digest(), "alice"), (bytes.fromhex(hashed), "bob the builder")]
    for bad in ("lonely-token", "sha256:abc bob", "sha256:" + "z" * 64 + " bob"):
        with pytest.raises(TokensFileError, match="line 1"):
            parse_tokens_file(bad)


async def test_tokens_file_verifier_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"tok-a alice\nsha256:{hashlib.sha256(b'tok-b').hexdigest()} bob\n")
    verifier = TokensFileVerifier(path)
    alice = await verifier.verify_token("tok-a")
    assert alice is not None and alice.subject == "alice"
    bob = await verifier.verify_token("tok-b")
    assert bob is not None and bob.subject == "bob"
    for wrong in ("tok-", "tok-a ", "TOK-A", "", f"sha256:{hashlib.sha256(b'tok-b').hexdigest()}"):
        assert await verifier.verify_token(wrong) is None, wrong

    path.write_text("tok-c carol\n")
    assert verifier.reload()
    assert await verifier.verify_token("tok-a") is None
    carol = await verifier.verify_token("tok-c")
    assert carol is not None and carol.subject == "carol"

    path.write_text("broken-line-without-subject\n")
    assert not verifier.reload()  # a broken edit keeps the tokens in use
    assert await verifier.verify_token("tok-c") is not None
    path.unlink()
    assert not verifier.reload()
    assert await verifier.verify_token("tok-c") is not None


@pytest.mark.parametrize(
    "env",
    [
        {"auth_jwks_url": "http://127.0.0.1:1/jwks"},
        {"auth_jwks_url": "http://127.0.0.1:1/jwks", "auth_issuer": ISSUER},
        {"auth_jwks_url": "http://x/jwks", "auth_issuer": ISSUER, "auth_audience": "weft-api"},
        {
            "auth_jwks_url": "http://x/jwks",
            "auth_issuer": ISSUER,
            "auth_audience": "http://x/mcp",
            "auth_tokens_file": "/tmp/tokens",
        },
    ],
    ids=["jwks-only", "no-audience", "audience-not-url", "both-modes"],
)
def test_half_configured_auth_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **env)


def test_auth_is_off_by_default() -> None:
    assert Settings(_env_file=None).auth_mode == "off"


def test_subject_scopes_the_key_inside_one_hash_tag() -> None:
    from service.cart_ids import CartIds, subject_tag
    from service.sessions import resolve_session, signed_in

    ids = CartIds(b"k" * 32)
    session = resolve_session({"sessionId": "chat-1"}, None, "default")
    for mode, tail in (("conversation", ".chat-1"), ("account", "")):
        alice = signed_in(session, subject_tag("alice@example.com"), mode, ids)
        bob = signed_in(session, subject_tag("bob@example.com"), mode, ids)
        assert alice.key != bob.key and alice.id == bob.id == "chat-1"
        for key in (alice.key, bob.key):
            assert key is not None and key.startswith("u-") and key.endswith(tail)
            assert "@" not in key and not set(key) & set("{}*?[]\\ ")
    # A raw id can never pose as a user-scoped key.
    assert session_key(alice.key).startswith("h-")


# ---------------------------------------------------------------- a JWKS served by the test


class Issuer:
    """An RSA signing key, its JWKS on a loopback HTTP server, and tokens signed with it."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200 if self.path == "/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def token(self, audience: str, subject: str = "alice", **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "sub": subject, "iat": now, "exp": now + 300, **overrides}
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def forged(self, audience: str) -> str:
        """Right claims and kid, signed by a different key."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "sub": "alice", "iat": now, "exp": now + 300}
        return jwt.encode(claims, other, algorithm="RS256", headers={"kid": self.kid})


@contextmanager
def running_issuer() -> Iterator[Issuer]:
    issuer = Issuer()
    issuer.thread.start()
    try:
        yield issuer
    finally:
        issuer.server.shutdown()
        issuer.server.server_close()


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with running_issuer() as running:
        yield running


def hmac_signed(claims: Mapping[str, Any], secret: bytes, kid: str) -> str:
    """A JWT "signed" with HS256: PyJWT itself refuses to use a PEM public key as an HMAC secret."""

    def part(data: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def bad_tokens(issuer: Issuer, audience: str) -> dict[str, str]:
    """Tokens a resource server must refuse, by what is wrong with them."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": audience, "sub": "alice", "exp": now + 300}
    public_pem = issuer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    good = issuer.token(audience)
    return {
        "wrong-audience": issuer.token("https://elsewhere.test/mcp"),
        "wrong-issuer": issuer.token(audience, iss="https://evil.test"),
        "expired": issuer.token(audience, iat=now - 3600, exp=now - 600),
        "bad-signature": issuer.forged(audience),
        "tampered-payload": good.split(".")[0]
        + "."
        + hmac_signed({**claims, "sub": "root"}, b"x", "k").split(".")[1]
        + "."
        + good.split(".")[2],
        "no-subject": issuer.token(audience, sub=None),
        "no-expiry": issuer.token(audience, exp=None),
        "alg-none": jwt.encode(claims, None, algorithm="none", headers={"kid": issuer.kid}),
        # The old key-confusion attack: HMAC with the public key's PEM as the secret.
        "hs256-with-public-key": hmac_signed(claims, public_pem, issuer.kid),
        "unknown-kid": jwt.encode(claims, issuer.key, algorithm="RS256", headers={"kid": "other-key"}),
        "garbage": "not.a.jwt",
    }


async def test_jwt_verifier(issuer: Issuer) -> None:
    audience = "https://shop.test/mcp"
    verifier = JwtVerifier(issuer.jwks_url, ISSUER, audience)
    good = await verifier.verify_token(issuer.token(audience, subject="alice", scope="cart read"))
    assert good is not None and good.subject == "alice" and good.scopes == ["cart", "read"]
    assert good.claims == {"iss": ISSUER} and good.resource == audience
    for name, token in bad_tokens(issuer, audience).items():
        assert await verifier.verify_token(token) is None, name


async def test_jwt_verifier_with_the_issuer_down() -> None:
    verifier = JwtVerifier(f"http://127.0.0.1:{free_port()}/jwks.json", ISSUER, "https://shop.test/mcp")
    with running_issuer() as elsewhere:
        token = elsewhere.token("https://shop.test/mcp")
    started = time.monotonic()
    assert await verifier.verify_token(token) is None  # refused (401), not an exception (500)
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------- over real HTTP: the tokens file


def keys_under(client: redis.Redis, prefix: str) -> set[str]:
    """Every key under the prefix but the generated server secret (written once at start, by no call)."""
    return set(client.scan_iter(match=f"{prefix}:*", count=1000)) - {f"{prefix}:secret", f"{prefix}:xfer-sweep"}


@pytest.mark.e2e
@pytest.mark.redis
def test_tokens_file_over_http(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"tok-alice alice\nsha256:{hashlib.sha256(b'tok-bob').hexdigest()} bob\n")
    prefix = new_prefix()
    env = {"WEFT_REDIS_URL": redis_url, "WEFT_KEY_PREFIX": prefix, "WEFT_AUTH_TOKENS_FILE": str(tokens)}
    with ServeProcess(env=env) as shop:
        message = tool_call_message("view_cart", meta={"sessionId": "chat-1"})
        assert_refused(post(shop.mcp_url, message))  # no token
        assert_refused(post(shop.mcp_url, message, "tok-mallory"))
        assert_refused(post(shop.mcp_url, message, "tok-alice2"))
        assert_refused(httpx.post(shop.mcp_url, json=message, headers={**JSON_HEADERS, "Authorization": "Basic eA=="}))
        assert "resource_metadata" not in post(shop.mcp_url, message).headers["www-authenticate"]
        assert httpx.get(f"{shop.url}/healthz", timeout=5).status_code == 200  # probes need no token
        assert httpx.get(f"{shop.url}/readyz", timeout=5).status_code == 200

        # One conversation id under two users is two carts (each shopper's account cart).
        alice = call_ok(shop.mcp_url, "tok-alice", "add_to_cart", {"product_id": OATS, "quantity": 2}, "chat-1")
        bob = call_ok(shop.mcp_url, "tok-bob", "view_cart", {}, "chat-1")
        assert [i["quantity"] for i in alice["items"]] == [2] and bob["items"] == []
        call_ok(shop.mcp_url, "tok-bob", "add_to_cart", {"product_id": OATS, "quantity": 5}, "chat-1")
        assert [i["quantity"] for i in call_ok(shop.mcp_url, "tok-alice", "view_cart", {}, "chat-1")["items"]] == [2]
        assert keys_under(redis_client, prefix) == {user_key(prefix, "alice"), user_key(prefix, "bob")}
        debug = call_ok(shop.mcp_url, "tok-bob", "debug_session", {}, "chat-1")
        assert debug["session_id"] == "chat-1" and debug["items_in_cart"] == 1 and "alice" not in json.dumps(debug)
        assert "tok-alice" not in shop.log_text() and "tok-bob" not in shop.log_text()

        # SIGHUP rereads the file: carol gets in, alice is out, bob stays.
        assert shop.process is not None
        tokens.write_text(f"tok-carol carol\nsha256:{hashlib.sha256(b'tok-bob').hexdigest()} bob\n")
        os.kill(shop.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while post(shop.mcp_url, message, "tok-carol").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert post(shop.mcp_url, message, "tok-carol").status_code == 200
        assert_refused(post(shop.mcp_url, message, "tok-alice"))
        assert post(shop.mcp_url, message, "tok-bob").status_code == 200
        assert shop.is_alive()

        # A broken edit and a SIGHUP keep the tokens in use, and the process.
        tokens.write_text("no-subject-here\n")
        os.kill(shop.process.pid, signal.SIGHUP)
        time.sleep(0.3)
        assert shop.is_alive()
        assert post(shop.mcp_url, message, "tok-carol").status_code == 200
        assert "Tokens file not reloaded" in shop.log_text()


@pytest.mark.e2e
def test_unreadable_tokens_file_stops_the_start(tmp_path: Path) -> None:
    import subprocess

    from harness.processes import serve_command, serve_env

    completed = subprocess.run(
        serve_command(port=0),
        env=serve_env({"WEFT_AUTH_TOKENS_FILE": str(tmp_path / "missing")}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert completed.returncode == 2
    assert "WEFT_AUTH_TOKENS_FILE" in completed.stderr and "Traceback" not in completed.stderr


# ---------------------------------------------------------------- over real HTTP: OAuth resource server


@pytest.mark.e2e
@pytest.mark.redis
async def test_oauth_resource_server_over_http(issuer: Issuer, redis_url: str, redis_client: redis.Redis) -> None:
    port = free_port()
    audience = f"http://127.0.0.1:{port}/mcp"
    prefix = new_prefix()
    env = {
        "WEFT_REDIS_URL": redis_url,
        "WEFT_KEY_PREFIX": prefix,
        "WEFT_AUTH_JWKS_URL": issuer.jwks_url,
        "WEFT_AUTH_ISSUER": ISSUER,
        "WEFT_AUTH_AUDIENCE": audience,
    }
    with ServeProcess(env=env, port=port) as shop:
        metadata_url = f"{shop.url}/.well-known/oauth-protected-resource/mcp"
        metadata = httpx.get(metadata_url, timeout=5)
        assert metadata.status_code == 200 and metadata.headers["content-type"].startswith("application/json")
        assert metadata.json()["resource"] == audience
        assert metadata.json()["authorization_servers"] == [ISSUER]

        message = tool_call_message("view_cart", meta={"sessionId": "chat-1"})
        refused = post(shop.mcp_url, message)
        assert_refused(refused)
        assert f'resource_metadata="{metadata_url}"' in refused.headers["www-authenticate"]
        for name, token in bad_tokens(issuer, audience).items():
            response = post(shop.mcp_url, message, token)
            assert response.status_code == 401, (name, response.status_code, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer "), name

        alice, bob = issuer.token(audience, "alice@example.com"), issuer.token(audience, "bob@example.com")
        call_ok(shop.mcp_url, alice, "add_to_cart", {"product_id": OATS, "quantity": 3}, "chat-1")
        assert call_ok(shop.mcp_url, bob, "view_cart", {}, "chat-1")["items"] == []
        call_ok(shop.mcp_url, bob, "add_to_cart", {"product_id": OATS}, "chat-1")
        assert keys_under(redis_client, prefix) == {
            user_key(prefix, "alice@example.com"),
            user_key(prefix, "bob@example.com"),
        }
        assert not any("@" in key for key in keys_under(redis_client, prefix))

        # The SDK's own client, both protocol eras, with the bearer token on every request.
        for mode in ("legacy", "2026-07-28"):
            http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {alice}"}, timeout=10)
            async with (
                http_client,
                Client(streamable_http_client(shop.mcp_url, http_client=http_client), mode=mode) as client,
            ):
                viewed = await client.call_tool("view_cart", {}, meta={"sessionId": "chat-1"})
                assert not viewed.is_error, viewed.content[0].text
                assert [i["quantity"] for i in viewed.structured_content["items"]] == [3], mode
