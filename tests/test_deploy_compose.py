"""The stack's files are valid: docker-compose.yml (``docker-compose config``), deploy/nginx.conf (``nginx -t``).

No Docker engine runs here, so the containers themselves are not started; .ci/run installs
``docker-compose`` and ``nginx-light`` so that CI never skips these.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from service.config import Settings
from tests.nginx_process import NginxProcess, nginx_binary

ROOT = Path(__file__).resolve().parents[1]


def compose_config() -> str:
    """docker-compose.yml as ``docker-compose config`` resolves it (defaults filled in)."""
    return subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed (.ci/run installs it)")
def test_compose_file_is_valid() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed (.ci/run installs it)")
def test_compose_runs_several_workers_behind_nginx_on_8080() -> None:
    config = compose_config()
    assert "8080:8080" in config or "published: 8080" in config
    for service in ("redis:", "weft1:", "weft2:", "nginx:"):
        assert f"\n  {service}" in config
    assert config.count("healthcheck:") == 4


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed (.ci/run installs it)")
def test_fixed_worker_addresses_sit_where_no_dynamic_lease_reaches() -> None:
    """podman leases dynamic addresses (redis, nginx) upwards from the last one it gave, kept across restarts
    and ``down``/``up`` (.5, .6, .7 ...): a worker fixed low in the subnet (.11) was refused once redis had been
    given its address. The fixed ones belong at the top of the /16, in nginx's hosts too."""
    config = compose_config()
    fixed = re.findall(r"ipv4_address: ([0-9.]+)", config)
    assert len(fixed) == 2, fixed
    assert all(address.startswith("172.28.255.") for address in fixed), fixed
    assert "subnet: 172.28.0.0/16" in config
    for name, address in zip(("weft1", "weft2"), fixed, strict=True):
        assert f"{name}:{address}" in config, f"nginx's extra_hosts name {name} at {address}"


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"(?m)^#? ?(WEFT_[A-Z_]+)=", (ROOT / ".env.example").read_text()))
    settings = {f"WEFT_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set()


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs nginx-light)")
def test_nginx_workers_share_what_they_learn_about_weft_workers() -> None:
    """Without a shared ``zone`` each nginx worker process keeps its own failure marks: one that saw weft2
    fail while it drained still skipped it after another had sent it calls again, and when weft1 then died,
    it answered 502 "no live upstreams" (the stack test, in CI). With the zone, one success counts for all."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"upstream weft \{(.*?)\n    \}", conf, re.S)
    assert upstream is not None
    assert re.search(r"^\s*zone \w+ \d+k;", upstream.group(1), re.M), "the weft upstream has a shared zone"


def test_nginx_conf_passes_nginx_t() -> None:
    nginx = NginxProcess(upstreams=["127.0.0.1:9", "127.0.0.1:10"])
    result = subprocess.run(nginx.command("-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


IMAGE_DEFAULTS = {
    "BASE_IMAGE": "python:3.11-slim",
    "REDIS_IMAGE": "redis:7.2-alpine",
    "NGINX_IMAGE": "nginx:1.27-alpine",
}


def _config(env: dict[str, str], folder: Path) -> str:
    """``docker-compose config`` with these variables and an empty env file (a developer's .env is not read)."""
    clean = {k: v for k, v in os.environ.items() if k not in IMAGE_DEFAULTS}
    (folder / "empty.env").write_text("")
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "--env-file", str(folder / "empty.env"), "config"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose is not installed (.ci/run installs it)")
def test_image_names_come_from_the_environment_with_the_public_images_as_defaults(tmp_path: Path) -> None:
    defaults = _config({}, tmp_path)
    assert f"BASE_IMAGE: {IMAGE_DEFAULTS['BASE_IMAGE']}" in defaults
    assert f"image: {IMAGE_DEFAULTS['REDIS_IMAGE']}" in defaults
    assert f"image: {IMAGE_DEFAULTS['NGINX_IMAGE']}" in defaults
    chosen = {"BASE_IMAGE": "local/py:1", "REDIS_IMAGE": "local/redis:1", "NGINX_IMAGE": "local/nginx:1"}
    config = _config(chosen, tmp_path)
    assert "BASE_IMAGE: local/py:1" in config and "image: local/redis:1" in config and "image: local/nginx:1" in config
    assert not any(image in config for image in IMAGE_DEFAULTS.values())


def test_env_example_documents_each_image_with_its_default() -> None:
    example = (ROOT / ".env.example").read_text()
    for name, default in IMAGE_DEFAULTS.items():
        assert re.search(rf"(?m)^{name}={re.escape(default)}$", example), name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={IMAGE_DEFAULTS['BASE_IMAGE']}\nFROM ${{BASE_IMAGE}}" in dockerfile


def test_build_offline_images_says_how_to_use_it() -> None:
    script = ROOT / "deploy" / "build-offline-images"
    assert subprocess.run(["bash", "-n", str(script)], timeout=10).returncode == 0
    usage = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 0 and "--wheels" in usage.stdout and "CA_BUNDLE" in usage.stdout
    wrong = subprocess.run([str(script), "--nope"], capture_output=True, text=True, timeout=10)
    assert wrong.returncode == 2 and "unknown argument" in wrong.stderr
