"""The stack's files are valid: docker-compose.yml (``docker-compose config``), deploy/nginx.conf (``nginx -t``).

No Docker engine runs here, so the containers themselves are not started; .ci/run installs
``docker-compose`` and ``nginx-light`` so that CI never skips these.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from service.config import Settings
from tests.nginx_process import NginxProcess, nginx_binary

ROOT = Path(__file__).resolve().parents[1]


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
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    config = result.stdout
    assert "8080:8080" in config or "published: 8080" in config
    for service in ("redis:", "weft1:", "weft2:", "nginx:"):
        assert f"\n  {service}" in config
    assert config.count("healthcheck:") == 4


def test_env_example_documents_every_setting() -> None:
    documented = set(re.findall(r"(?m)^#? ?(WEFT_[A-Z_]+)=", (ROOT / ".env.example").read_text()))
    settings = {f"WEFT_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set()


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs nginx-light)")
def test_nginx_conf_passes_nginx_t() -> None:
    nginx = NginxProcess(upstreams=["127.0.0.1:9", "127.0.0.1:10"])
    result = subprocess.run(nginx.command("-t"), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
