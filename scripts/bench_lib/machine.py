"""What a run ran on: CPU, cores, RAM, Python, grpcio, etcd, date."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Machine:
    """The facts a reader needs to compare two runs."""

    cpu: str
    cores: int
    ram_gib: float
    python: str
    grpcio: str
    protobuf: str
    etcd: str
    kernel: str
    date: str

    def line(self) -> str:
        """One markdown line describing the machine."""
        return (
            f"{self.cpu}, {self.cores} cores, {self.ram_gib:.1f} GiB RAM · Linux {self.kernel} · "
            f"Python {self.python} · grpcio {self.grpcio} · protobuf {self.protobuf} · "
            f"etcd {self.etcd} · {self.date}"
        )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def etcd_version(binary: str = "etcd") -> str:
    """``etcd --version``'s first line, reduced to the number."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return "absent"
    first = out.splitlines()[0] if out else ""
    return first.split(":", 1)[1].strip() if ":" in first else first or "unknown"


def describe() -> Machine:
    """The machine this process runs on."""
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 0,
        ram_gib=_ram_gib(),
        python=platform.python_version(),
        grpcio=_version("grpcio"),
        protobuf=_version("protobuf"),
        etcd=etcd_version(),
        kernel=platform.release(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
