"""A peer or reference tool in a virtualenv of its own (never a project dependency), built with uv, the project's
installer (its Makefile puts uv in .venv), and stamped with its requirements so a changed pin rebuilds it. Shared
packages are pinned to the versions of the project's environment."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class SideVenv:
    path: Path
    packages: tuple[str, ...]  # its own pins
    shared: tuple[str, ...]  # pinned to the project's installed versions
    check: str  # Python run in the virtualenv after installing: imports what it needs
    env: dict[str, str] = field(default_factory=dict)  # for the check (telemetry off...)
    compile_bytecode: bool = False

    def requirements(self) -> list[str]:
        return [*self.packages, *(f"{name}=={metadata.version(name)}" for name in self.shared)]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def is_installed(self) -> bool:
        stamp = self.path / ".installed"
        return self.python.exists() and stamp.exists() and stamp.read_text() == "\n".join(self.requirements())

    def install(self) -> Path:
        """Create (or refresh) the virtualenv; touches its stamp when up to date (make's target)."""
        stamp = self.path / ".installed"
        if self.is_installed():
            stamp.touch()
            return self.python
        uv = Path(sys.executable).parent / "uv"
        if not uv.exists():
            raise SystemExit(f"{uv} is missing: run `make install` first")
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run([str(uv), "venv", "-q", "--allow-existing", "--python", version, str(self.path)], check=True)
        subprocess.run([str(uv), "pip", "install", "-q", *(["--compile-bytecode"] if self.compile_bytecode else []),
                        "--python", str(self.python), *self.requirements()], check=True)
        subprocess.run([str(self.python), "-c", self.check], check=True, env={**os.environ, **self.env},
                       cwd=tempfile.gettempdir())
        stamp.write_text("\n".join(self.requirements()))
        return self.python
