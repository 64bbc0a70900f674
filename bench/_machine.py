"""What the figures were measured on: they mean little without the machine and versions."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil

__all__ = ["describe_machine", "machine_cpu_seconds"]


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware"):
            return value.strip()
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_cpu_seconds() -> dict[str, float]:
    """CPU seconds the whole machine has spent busy, and stolen by its hypervisor, so far."""
    machine = psutil.cpu_times()
    busy = sum(
        getattr(machine, field, 0.0) for field in ("user", "nice", "system", "irq", "softirq")
    )
    return {"machine_busy": busy, "machine_steal": getattr(machine, "steal", 0.0)}


def describe_machine() -> dict[str, Any]:
    """Hostname, CPU, cores, memory, load and the versions that decide the numbers."""
    memory = _memory_bytes()
    return {
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_count_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": memory,
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "numpy": np.__version__,
        "scipy": _version("scipy"),
        "cineamate": _version("cineamate"),
    }
