"""The local base image, made from Debian's mirror for machines that reach no image registry.

    python -m deploy.base_image [--refresh]

debootstrap (minbase with python3, python3-venv, ca-certificates: Python 3.11 like the project) -> a root file
system trimmed the way Docker's slim images are -> a tarball cached in $XDG_CACHE_HOME/purchase-serving (reused
by every later build on this machine) -> an image (`buildah from scratch` + the tarball) ->
deploy/container/base.Containerfile (security updates, uv) -> localhost/purchase-serving-base:bookworm.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from deploy import buildah

ROOT = Path(__file__).resolve().parent.parent
CONTAINERFILE = ROOT / "deploy" / "container" / "base.Containerfile"
ROOTFS_IMAGE = "localhost/purchase-serving-rootfs:bookworm"
BASE_IMAGE = "localhost/purchase-serving-base:bookworm"
SUITE = "bookworm"
PACKAGES = "python3,python3-venv,ca-certificates"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")

# What Debian's official "slim" images leave out (docs, man pages, translations), and their apt hygiene: downloaded
# packages are deleted after each install, so a later `apt-get install` layer does not keep them.
DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "purchase-serving"


def rootfs_tarball() -> Path:
    """The cached root file system; its name changes with the recipe, so a changed recipe never reuses a stale one."""
    recipe = hashlib.sha256(f"{SUITE}|{PACKAGES}|{MIRROR}|{DPKG_SLIM}|{APT_CLEAN}".encode()).hexdigest()[:12]
    return cache_dir() / f"{SUITE}-minbase-{recipe}.tar"


def uv_version() -> str:
    """The uv the project pins (pyproject.toml), so the image's resolver is the one the tests ran with."""
    for requirement in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        if requirement.startswith("uv=="):
            return requirement.split("==", 1)[1]
    raise SystemExit("pyproject.toml pins no uv version")


def _slim(rootfs: Path) -> None:
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(DPKG_SLIM)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    for pattern in ("usr/share/doc/*/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                    "var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*"):
        for path in rootfs.glob(pattern):
            if path.name in ("copyright", "locale.alias") or path.name == "partial":
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def make_rootfs_tarball(target: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap not found: apt-get install -y debootstrap (or pass BASE_IMAGE=python:3.11-slim)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="purchase-serving-rootfs-", dir=target.parent) as scratch:
        rootfs = Path(scratch) / "rootfs"
        print(f"debootstrap {SUITE} (minbase + {PACKAGES}) from {MIRROR} ...", flush=True)
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(rootfs), MIRROR],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        _slim(rootfs)
        partial = target.with_suffix(".tar.partial")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.replace(target)


def import_rootfs(tarball: Path) -> None:
    container = buildah.output("from", "scratch")
    try:
        buildah.run("add", "--quiet", container, str(tarball), "/")
        buildah.run("config", "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
        buildah.run("commit", "--quiet", container, ROOTFS_IMAGE)
    finally:
        buildah.run("rm", container, quiet=True)


def ensure_base(refresh: bool = False) -> str:
    """The local base image, made now if this machine lacks it; returns its name."""
    if not refresh and buildah.image_exists(BASE_IMAGE):
        return BASE_IMAGE
    started = time.monotonic()
    tarball = rootfs_tarball()
    if refresh or not tarball.exists():
        make_rootfs_tarball(tarball)
    print(f"importing {tarball} as {ROOTFS_IMAGE}", flush=True)
    import_rootfs(tarball)
    buildah.bud(CONTAINERFILE, CONTAINERFILE.parent, BASE_IMAGE, ROOTFS_IMAGE, build_args={"UV_VERSION": uv_version()})
    print(f"{BASE_IMAGE} ready in {time.monotonic() - started:.0f} s", flush=True)
    return BASE_IMAGE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--refresh", action="store_true", help="debootstrap again (security updates, new packages)")
    ensure_base(parser.parse_args(argv).refresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
