"""`make container`: the bento as an OCI image, built by `bentoml containerize` with the buildah (or podman) backend.

    python -m deploy.build [--bento purchase_serving:latest] [--base IMAGE] [--image localhost/purchase-serving]

The image is BentoML's own (its generated Dockerfile: user `bentoml`, uid 1034, `bentoml serve` as entrypoint);
what this project adds to it lives in bentofile.yaml (`envs`: STATE_DIR and telemetry off; `docker.setup_script`:
the state folder owned by that user). This command chooses the base, gives the build steps the host's CA bundle
(deploy/buildah.py), declares the state folder a VOLUME, tags `<image>:<bento version>` and `<image>:latest`, and
writes the image's size and the build's times to artifacts/container/build.json.

Base: `--base` or BASE_IMAGE (e.g. python:3.11-slim where a registry is reachable); by default the local Debian
base (deploy/base_image.py), made on first use. Caches: the base's tarball and image, buildah's layers (`--layers`)
and uv's download cache (a build cache mount, DOCKER_BUILDKIT=1), all kept between builds on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from deploy import buildah
from deploy.base_image import BASE_IMAGE, ensure_base

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "artifacts" / "container" / "build.json"
DEFAULT_IMAGE = "localhost/purchase-serving"


def bento_env(name: str) -> str:
    """A variable the image sets, from bentofile.yaml's `envs` (the one place that defines it)."""
    for entry in yaml.safe_load((ROOT / "bentofile.yaml").read_text()).get("envs", []):
        if entry["name"] == name:
            return str(entry["value"])
    raise KeyError(f"bentofile.yaml sets no {name} in envs")


def resolve_bento(reference: str) -> str:
    import bentoml

    return str(bentoml.get(reference).tag)


def image_size(image: str) -> int:
    """Uncompressed size in bytes (the sum of its layers), as `podman images` counts it."""
    if shutil.which("podman"):
        return int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", image], check=True,
                                  capture_output=True, text=True).stdout.strip())  # fmt: skip
    listed = json.loads(buildah.output("images", "--json", image))[0]["size"]  # "1.2 GB": buildah prints no bytes
    number, unit = listed.split()
    return int(float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


def containerize(bento: str, tag: str, start: str, volumes: list[str], backend: str) -> None:
    command = [str(Path(sys.executable).parent / "bentoml"), "containerize", bento, "--backend", backend,
               "--image-tag", tag, "--opt", f"from={start}", "--opt", "layers", "--opt", "force-rm"]  # fmt: skip
    for volume in volumes:
        command += ["--opt", f"volume={volume}"]
    # DOCKER_BUILDKIT=1: BentoML then mounts a build cache on /root/.cache for the `uv pip install` step.
    env = {**buildah.environment(), "DOCKER_BUILDKIT": "1", "BENTOML_DO_NOT_TRACK": "True", "DO_NOT_TRACK": "1"}
    if buildah.image_exists(tag):  # a tag left by an earlier build must not pass for this one
        buildah.run("rmi", tag, quiet=True)
    result = subprocess.run(command, cwd=ROOT, env=env)
    # `bentoml containerize` logs a failed build and still exits 0: the image's presence is the verdict.
    if result.returncode != 0 or not buildah.image_exists(tag):
        raise SystemExit(f"bentoml containerize did not build {tag} (exit {result.returncode}); see the log above")


def build(bento: str, image: str, base: str | None, backend: str) -> dict:
    started = time.monotonic()
    tag = f"{image}:{bento.split(':')[1]}"
    made_base = not base and not buildah.image_exists(BASE_IMAGE)
    base = base or ensure_base()
    base_seconds = time.monotonic() - started
    start, volumes = buildah.build_base(base)
    containerize(bento, tag, start, volumes, backend)
    state_dir = bento_env("STATE_DIR")
    buildah.finish(tag, "--volume", state_dir, "--label", "org.opencontainers.image.title=purchase-serving",
                   "--label", f"org.opencontainers.image.version={bento}", "--label", f"bento={bento}")  # fmt: skip
    buildah.run("tag", tag, f"{image}:latest")
    report = {
        "image": tag, "bento": bento, "base": base, "backend": backend,
        "size_bytes": image_size(tag),
        "seconds": round(time.monotonic() - started, 1),
        "base_seconds": round(base_seconds, 1), "base_made_now": made_base,
        "state_dir": state_dir,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }  # fmt: skip
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"built {tag} (also {image}:latest) from {base}: {report['size_bytes'] / 1e9:.2f} GB, "
          f"{report['seconds']:.0f} s (base {report['base_seconds']:.0f} s{', made now' if made_base else ''}); "
          f"{REPORT.relative_to(ROOT)}", flush=True)  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bento", default="purchase_serving:latest", help="the bento to containerize")
    parser.add_argument("--image", default=os.environ.get("IMAGE") or DEFAULT_IMAGE, help="image name, no tag")
    parser.add_argument("--base", default=os.environ.get("BASE_IMAGE") or None,
                        help="base image (default: the local Debian base, made on first use)")
    parser.add_argument("--backend", choices=("buildah", "podman"), default=os.environ.get("BACKEND") or "buildah")
    args = parser.parse_args(argv)
    if shutil.which("buildah") is None:
        raise SystemExit("buildah not found: apt-get install -y buildah (see docs/deployment.md)")
    build(resolve_bento(args.bento), args.image, args.base, args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
