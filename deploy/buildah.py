"""buildah as the image builds use it: chroot isolation by default, and the host's CA bundle inside build steps.

Why the CA bundle: behind a TLS-inspecting proxy (as on the machines this project is built on) pip and uv inside a
build step reject the registries' certificates, because the image trusts Debian's bundle, not the proxy's CA.
The host's bundle is mounted read-only at BUILD_CA for the build steps only, and the variables that point pip and
uv at it are set on a config-only copy of the base (`--from`) and removed from the finished image, so the image
trusts what any image trusts. BUILD_CA_BUNDLE names another bundle; BUILD_CA_BUNDLE= (empty) mounts none.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

BUILD_CA = "/run/build-ca.pem"
CA_ENV = ("SSL_CERT_FILE", "PIP_CERT")


def environment() -> dict[str, str]:
    # chroot isolation: the one that runs where the OCI runtimes cannot set up a container (see docs/deployment.md).
    return {**os.environ, "BUILDAH_ISOLATION": os.environ.get("BUILDAH_ISOLATION", "chroot")}


def run(*args: str, quiet: bool = False) -> None:
    subprocess.run(["buildah", *args], check=True, env=environment(),
                   stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.DEVNULL if quiet else None)  # fmt: skip


def output(*args: str) -> str:
    return subprocess.run(["buildah", *args], check=True, env=environment(), capture_output=True,
                          text=True).stdout.strip()  # fmt: skip


def image_exists(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], env=environment(),
                          capture_output=True).returncode == 0  # fmt: skip


def image_id(name: str) -> str:
    return output("inspect", "--type", "image", "--format", "{{.FromImageID}}", name)


def host_ca_bundle() -> Path | None:
    """The bundle build steps trust: BUILD_CA_BUNDLE, else the host's own (SSL_CERT_FILE or Debian's path)."""
    if "BUILD_CA_BUNDLE" in os.environ:
        named = os.environ["BUILD_CA_BUNDLE"]
        return Path(named) if named else None
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def configure(image: str, target: str, *options: str) -> None:
    """Commit `image` with `buildah config` options applied (no new files) as `target`."""
    container = output("from", image)
    try:
        run("config", *options, container)
        run("commit", "--quiet", container, target, quiet=True)
    finally:
        run("rm", container, quiet=True)


def build_base(base: str) -> tuple[str, list[str]]:
    """(the image to build `--from`, the `--volume` specs) for builds on `base` whose steps need the CA bundle.

    The config-only copy is kept under a name derived from the base's id, so later builds start from the very
    same image and buildah's layer cache applies.
    """
    bundle = host_ca_bundle()
    if bundle is None:
        return base, []
    if not image_exists(base):
        run("pull", "--quiet", base, quiet=True)
    derived = f"localhost/purchase-serving-buildca:{image_id(base)[:12]}"
    if not image_exists(derived):
        configure(base, derived, *(option for name in CA_ENV for option in ("--env", f"{name}={BUILD_CA}")))
    return derived, [f"{bundle}:{BUILD_CA}:ro"]


def finish(image: str, *options: str) -> None:
    """Remove the build-only CA variables from a built image and apply further config options, in place."""
    configure(image, image, *(option for name in CA_ENV for option in ("--env", f"{name}-")), *options)


def bud(containerfile: Path, context: Path, tag: str, base: str, build_args: dict[str, str] | None = None) -> None:
    """`buildah bud --layers` of a Containerfile whose first FROM is `base`, with the CA bundle in its steps."""
    start, volumes = build_base(base)
    args = ["bud", "--layers", "--force-rm", "--quiet", "-f", str(containerfile), "-t", tag, "--from", start]
    for volume in volumes:
        args += ["--volume", volume]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    run(*args, str(context))
    finish(tag)
