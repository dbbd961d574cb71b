"""Settings read from the environment (prefix ``WEFT_``) and an optional ``.env`` file."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
AuthMode = Literal["off", "optional", "required"]
REDIS_SCHEMES = ("redis", "rediss", "unix")
MAX_REDIS_DB = 2**31 - 1
YES_NO = frozenset({"", "0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n"})
KEY_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MIN_SECRET_LENGTH = 32
SHORT_SECRET = (
    f"must be at least {MIN_SECRET_LENGTH} characters; make one with "
    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
)
BAD_REDIS_URL = (
    "not a Redis URL like redis://[:password@]host[:port][/db], rediss://... or unix:///path, with only "
    "redis-py's query options (like ?socket_timeout=5); percent-encode '/', ':', '@' and '%' in a password "
    "(for example '/' as %2F)"
)


class Settings(BaseSettings):
    """Every knob the service has; names are part of the contract (see DESIGN.md)."""

    model_config = SettingsConfigDict(env_prefix="WEFT_", env_file=".env", extra="ignore")

    redis_url: str | None = Field(default=None, description="Redis URL; unset = embedded in-process store.")
    key_prefix: str = Field(
        default="weft", description="Prefix of every Redis key: 1 to 64 of letters, digits and _ . : -"
    )
    cart_ttl_seconds: int = Field(default=0, ge=0, description="Sliding cart expiry; 0 = never expire.")
    session_fallback: Literal["mint", "default", "reject"] = Field(
        default="mint", description="No cart_id and no conversation id: mint a new cart, use 'default', or reject."
    )
    secret_key: SecretStr | None = Field(
        default=None, description="Signs cart_ids and transfer codes; unset = generated (see docs/operating.md)."
    )
    secret_key_previous: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Older secrets (comma list) still accepted for opening cart_ids."
    )
    idempotency_ttl_seconds: int = Field(default=86400, ge=1, description="How long an idempotency key is kept.")
    transfer_code_ttl_seconds: int = Field(default=600, ge=1, description="How long a transfer code is valid.")
    claim_failures_per_caller: int = Field(default=10, ge=1, description="Failed claims per caller per window.")
    claim_failures_total: int = Field(default=100, ge=1, description="Failed claims across the deployment per window.")
    claim_failure_window_seconds: int = Field(default=3600, ge=1, description="The failed-claim counting window.")
    stores_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(LOCAL_HOSTS))
    max_quantity: int = Field(default=99, ge=1, le=1_000_000)
    max_cart_lines: int = Field(default=100, ge=1, le=10_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = Field(default="text", description="json = one JSON object per line.")
    debug_tool: bool = True
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Bigger POST bodies get 413, unparsed.")
    auth_tokens_file: Path | None = Field(default=None, description="Lines '<token> <subject>'; SIGHUP rereads.")
    auth_jwks_url: str | None = Field(default=None, description="OAuth resource server: the issuer's JWKS URL.")
    auth_issuer: str | None = None
    auth_audience: str | None = Field(default=None, description="This server's public MCP URL, the tokens' aud.")
    auth_mode: AuthMode = Field(
        default="off",
        description="off, optional (no token = anonymous) or required; unset = required with a tokens file or JWKS.",
    )
    signed_in_carts: Literal["account", "conversation"] = Field(
        default="account", description="A signed-in shopper's cart: one per account, or one per conversation."
    )
    redis_cluster: bool = Field(default=False, description="WEFT_REDIS_URL names any node of a Redis Cluster.")
    redis_sentinels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="host:port of Sentinels; set = find the primary through them."
    )
    redis_sentinel_service: str = Field(default="mymaster", min_length=1, description="The Sentinels' master name.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Addresses/CIDRs whose X-Forwarded-For/-Proto are believed; empty = none."
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, le=3600, description="A request's headers must arrive within this; else 408 and closed."
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="A request's body must arrive within this after its headers; else 408."
    )
    max_connections: int = Field(
        default=1000, ge=1, description="Open connections per worker (lowered to fit ulimit -n); more get 503."
    )
    playground: bool = Field(default=True, description="GET / serves a page to shop through the widgets.")
    widget_domain: str | None = Field(
        default=None, max_length=253, description="The widgets' dedicated domain (ui.domain, openai/widgetDomain)."
    )
    shutdown_drain_seconds: float = Field(
        default=5.0, ge=0, le=300, description="After SIGTERM, /readyz says 503 this long before the server stops."
    )

    @field_validator("redis_url", "stores_dir", "widget_domain", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("widget_domain")
    @classmethod
    def _domain_is_one_word(cls, value: str | None) -> str | None:
        """Copied into the views' ``_meta`` as given; a space or control character there is a typo."""
        if value is not None and (not value.isprintable() or any(ch.isspace() for ch in value)):
            raise ValueError("must be one domain or origin, like https://shop.example.com, with no spaces")
        return value.strip() if value else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: str | None) -> str | None:
        """Checked here, with the other settings, rather than in every worker with a traceback.

        The message never quotes the URL or the parser's words: both can hold the password.
        """
        if value is None:
            return value
        if not redis_url_is_valid(value):
            raise ValueError(BAD_REDIS_URL)
        return value

    @field_validator("key_prefix")
    @classmethod
    def _key_prefix_is_plain(cls, value: str) -> str:
        """No braces or glob characters: counting matches ``<prefix>:cart:{*`` exactly."""
        if not KEY_PREFIX_PATTERN.match(value):
            raise ValueError("must be 1 to 64 characters of letters, digits and _ . : - (no braces, spaces or *?[])")
        return value

    @field_validator("secret_key", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key")
    @classmethod
    def _secret_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        """Never quotes the value: the message names only the rule and how to make one."""
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(SHORT_SECRET)
        return value

    @field_validator("secret_key_previous", mode="before")
    @classmethod
    def _split_secrets(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("secret_key_previous")
    @classmethod
    def _previous_are_long(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(secret.get_secret_value()) < MIN_SECRET_LENGTH for secret in value):
            raise ValueError("each secret " + SHORT_SECRET)
        return value

    @field_validator("auth_tokens_file", "auth_jwks_url", "auth_issuer", "auth_audience", mode="before")
    @classmethod
    def _blank_auth_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _one_auth_mode(self) -> Settings:
        """Auth is off, a tokens file, or a whole JWT trio; a half-configured JWT mode would fail open or shut."""
        jwt_parts = {
            "WEFT_AUTH_JWKS_URL": self.auth_jwks_url,
            "WEFT_AUTH_ISSUER": self.auth_issuer,
            "WEFT_AUTH_AUDIENCE": self.auth_audience,
        }
        missing = [name for name, value in jwt_parts.items() if value is None]
        if 0 < len(missing) < len(jwt_parts):
            raise ValueError(f"JWT authentication needs all of {', '.join(jwt_parts)}; missing {', '.join(missing)}")
        if not missing and self.auth_tokens_file is not None:
            raise ValueError("set either WEFT_AUTH_TOKENS_FILE or the WEFT_AUTH_JWKS_URL trio, not both")
        if not missing and not str(self.auth_audience).startswith(("https://", "http://")):
            raise ValueError(
                "WEFT_AUTH_AUDIENCE must be this server's public MCP URL, like https://shop.example.com/mcp"
            )
        if "auth_mode" not in self.model_fields_set:  # DESIGN's default: required when tokens can be checked
            self.auth_mode = "off" if self.token_kind == "none" else "required"
        elif self.auth_mode != "off" and self.token_kind == "none":
            raise ValueError(
                f"WEFT_AUTH_MODE={self.auth_mode} needs WEFT_AUTH_TOKENS_FILE or the WEFT_AUTH_JWKS_URL trio "
                "to check tokens with"
            )
        return self

    @field_validator("allowed_hosts", "redis_sentinels", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """``WEFT_ALLOWED_HOSTS=shop.example.com,10.0.0.5:8000`` (comma-separated, ``*`` = any); same for lists."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def uses_embedded_store(self) -> bool:
        return self.redis_url is None and not self.redis_sentinels

    @model_validator(mode="after")
    def _one_redis_topology(self) -> Settings:
        """Cluster and Sentinel are two different deployments; a cluster needs a node to start from."""
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError("set either WEFT_REDIS_CLUSTER=true or WEFT_REDIS_SENTINELS, not both")
        if self.redis_cluster and self.redis_url is None:
            raise ValueError("WEFT_REDIS_CLUSTER=true needs WEFT_REDIS_URL naming a node, like redis://10.0.0.5:6379")
        for sentinel in self.redis_sentinels:
            host, _, port = sentinel.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"WEFT_REDIS_SENTINELS takes host:port items, not {sentinel!r}")
        return self

    @property
    def token_kind(self) -> Literal["none", "tokens_file", "jwt"]:
        """Which tokens can be checked (``auth_mode`` says whether they are asked for)."""
        if self.auth_tokens_file is not None:
            return "tokens_file"
        return "jwt" if self.auth_jwks_url is not None else "none"


def redis_url_is_valid(url: str) -> bool:
    """What redis-py would accept, checked now: scheme, host, port, a numeric database, and query options
    (``?socket_timeout=5``) that redis-py's connection takes, with values it can use.

    redis-py only finds a bad query option when it first connects, with a traceback, in every worker;
    building a connection object here (nothing is opened) finds it with the other settings.
    """
    from redis.asyncio import ConnectionPool
    from redis.connection import parse_url

    try:
        parts = urlsplit(url)
        if parts.scheme not in REDIS_SCHEMES:
            return False
        options = parse_url(url)
        if parts.scheme == "unix" and not options.get("path"):
            return False
        database = parts.path.strip("/") if parts.scheme != "unix" else str(options.get("db", "0"))
        if not (database == "" or database.isdigit()):
            return False
        if database and int(database) > MAX_REDIS_DB:
            return False
        ConnectionPool.from_url(url).make_connection()  # the query options, as redis-py will use them
        return all(_query_value_is_sane(name, value) for name, value in parse_qsl(parts.query))
    except Exception:  # any complaint at all: its words may quote the URL, so only the verdict is kept
        return False


def _query_value_is_sane(name: str, value: str) -> bool:
    """What redis-py lets through but Redis or the socket would refuse later: negative or NaN timeouts, a yes/no
    option that is neither, a client name with spaces, a database beyond any Redis'."""
    if name in ("socket_timeout", "socket_connect_timeout", "timeout"):
        return math.isfinite(float(value)) and float(value) > 0
    if name in ("db", "health_check_interval", "socket_read_size"):
        return value.isdigit() and int(value) <= MAX_REDIS_DB
    if name in ("socket_keepalive", "retry_on_timeout", "ssl_check_hostname", "decode_responses"):
        return value.lower() in YES_NO
    if name == "client_name":
        return value.isascii() and value.isprintable() and " " not in value
    return True


def settings_error_line(exc: Exception) -> str:
    """One line for an operator: each bad ``WEFT_`` variable and why, never the value given (it may be a secret)."""
    if not isinstance(exc, ValidationError):
        return f"invalid settings: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = "WEFT_" + str(error["loc"][0]).upper() if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        problems.append(f"{variable}: {message}" if variable else message)
    return "invalid settings: " + "; ".join(" ".join(problem.split()) for problem in problems)
