"""``python -m bench --profile``: where a served worker's CPU goes during a bench (a) round.

py-spy samples the worker process from outside (nothing in the server changes, and it keeps
serving at full speed with ``--nonblocking``) while the load generator of (a) drives it. Idle
samples (the event loop waiting in ``epoll``) are left out, so the shares are of busy CPU time.
The report groups each sample's innermost frame by layer (Weft, the SDK, Starlette, redis-py...)
and lists the functions with the most samples, on their own ("self") and with what they call
("total").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Layers by the path py-spy prints for a frame (shortened to the package part); first match wins.
LAYERS: tuple[tuple[str, str], ...] = (
    ("service/", "weft (service/)"),
    ("bench/", "weft (bench/)"),
    ("mcp_types/", "mcp SDK"),
    ("mcp/", "mcp SDK"),
    ("starlette/", "starlette"),
    ("uvicorn/", "uvicorn"),
    ("h11/", "h11"),
    ("anyio/", "anyio"),
    ("pydantic", "pydantic"),
    ("redis/", "redis-py"),
    ("prometheus_client/", "prometheus"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
    ("json/", "json"),
)


def layer(frame: str) -> str:
    """The layer of a py-spy frame ``function (path:line)``."""
    where = frame.rsplit("(", 1)[-1]
    for needle, name in LAYERS:
        if needle in where:
            return name
    return "other (stdlib, C)"


def function(frame: str) -> str:
    """A frame without its line number, so one function's samples add up."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({path})" if name else frame


@dataclass
class Profile:
    """Samples of one worker during one round: innermost frames, every frame once per stack, layers."""

    samples: int = 0
    own: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    layers: Counter[str] = field(default_factory=Counter)

    def add(self, stack: list[str], count: int) -> None:
        if not stack:
            return
        self.samples += count
        self.own[function(stack[-1])] += count
        self.layers[layer(stack[-1])] += count
        for name in {function(frame) for frame in stack}:
            self.total[name] += count

    def share(self, count: int) -> float:
        return 100.0 * count / self.samples if self.samples else 0.0


def parse_raw(text: str) -> Profile:
    """py-spy's ``--format raw`` (collapsed stacks: ``frame;frame;... count``, outermost first)."""
    profile = Profile()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            profile.add([frame for frame in stack.split(";") if not frame.startswith("process ")], int(count))
    return profile


def py_spy() -> str | None:
    """The py-spy of this interpreter's environment (the ``test`` extra installs it), else one on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Sampler:
    """``py-spy record`` on ``pid`` for ``seconds`` (start it, run the load, then ``result()``)."""

    def __init__(self, pid: int, seconds: float, rate: int = 250, cpu: int | None = 0) -> None:
        binary = py_spy()
        if binary is None:
            raise RuntimeError("py-spy is not installed (pip install -e '.[test]')")
        self.folder = tempfile.mkdtemp(prefix="weft-profile-")
        self.output = Path(self.folder) / "stacks.txt"
        command = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
        command += ["--rate", str(rate), "--format", "raw", "--nonblocking", "--output", str(self.output)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if cpu is not None and len(os.sched_getaffinity(0)) >= 2:
            from harness.processes import pin

            pin(self.process.pid, cpu)  # beside the load generator, off the worker's CPU

    def result(self, timeout: float = 60) -> Profile:
        try:
            _, errors = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            text = self.output.read_text(encoding="utf-8") if self.output.exists() else ""
            shutil.rmtree(self.folder, ignore_errors=True)
        if self.process.returncode != 0 or not text:
            raise RuntimeError(f"py-spy failed ({self.process.returncode}): {errors.decode(errors='replace')[-500:]}")
        return parse_raw(text)


def report(title: str, profile: Profile, top: int = 25) -> list[str]:
    """The printed lines: layers, then the top functions by own and by total samples."""
    lines = [f"{title}: {profile.samples} busy samples"]
    lines.append(
        "  by layer (innermost frame): "
        + ", ".join(f"{name} {profile.share(count):.1f}%" for name, count in profile.layers.most_common())
    )
    lines.append(f"  top {top} functions by own samples:")
    lines += [f"    {profile.share(count):5.1f}%  {name}" for name, count in profile.own.most_common(top)]
    lines.append(f"  top {top} functions by total samples (with what they call):")
    lines += [f"    {profile.share(count):5.1f}%  {name}" for name, count in profile.total.most_common(top)]
    return lines
