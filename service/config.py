"""Settings read from the environment (prefix ``WEFT_``) and an optional ``.env`` file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


class Settings(BaseSettings):
    """Every knob the service has; names are part of the contract (see DESIGN.md)."""

    model_config = SettingsConfigDict(env_prefix="WEFT_", env_file=".env", extra="ignore")

    redis_url: str | None = Field(default=None, description="Redis URL; unset = embedded in-process store.")
    key_prefix: str = Field(default="weft", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    cart_ttl_seconds: int = Field(default=0, ge=0, description="Sliding cart expiry; 0 = never expire.")
    session_fallback: Literal["default", "reject"] = "default"
    stores_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(LOCAL_HOSTS))
    max_quantity: int = Field(default=99, ge=1, le=1_000_000)
    max_cart_lines: int = Field(default=100, ge=1, le=10_000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    debug_tool: bool = True

    @field_validator("redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """``WEFT_ALLOWED_HOSTS=shop.example.com,10.0.0.5:8000`` (comma-separated, ``*`` = any)."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def uses_embedded_store(self) -> bool:
        return self.redis_url is None
