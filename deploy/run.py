"""`make container-run`: serve the image the way this machine can run containers.

    python -m deploy.run [--image localhost/purchase-serving:latest] [--port 3000] [--env KEY=VALUE ...]

Docker, else podman, where they can run containers (`docker run` / `podman run` with the port published and the
state folder on a named volume); else buildah with chroot isolation (`buildah run`, on the host's network, the
state folder bind-mounted from artifacts/container/state). CONTAINER_ENGINE=docker|podman|buildah picks one.

The container is configured only through environment variables: the service's settings (settings.py) set in this
shell are passed on, but STATE_DIR, which inside the image is its volume; `--env KEY=VALUE` adds more.
Ctrl-C or SIGTERM stops it as `docker stop` does: SIGTERM to the server, which finishes the requests in flight,
then SIGKILL after the grace period.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
CONTAINER_PORT = 3000
BENTO_UID = 1034  # BentoML's image user (bentoml._internal.container.generate.BENTO_UID_GID)
DEFAULT_STATE = ROOT / "artifacts" / "container" / "state"


def engine(image: str) -> str:
    """The first engine that can run a container of `image` here: docker, podman, then buildah (chroot)."""
    chosen = os.environ.get("CONTAINER_ENGINE")
    if chosen:
        return chosen
    for name, probe in (("docker", ["docker", "info"]), ("podman", ["podman", "run", "--rm", image, "true"])):
        if shutil.which(name) and subprocess.run(probe, capture_output=True, timeout=120).returncode == 0:
            return name
    if shutil.which("buildah"):
        return "buildah"
    raise SystemExit("no container engine can run the image here: install docker, podman or buildah")


def settings_from_environment() -> dict[str, str]:
    """The service's settings set in this shell, by their variable names, but STATE_DIR (a host path)."""
    from settings import Settings

    names = {name.upper() for name in Settings.model_fields} - {"STATE_DIR"}
    return {name: value for name, value in os.environ.items() if name in names}


class Container:
    """One container of the image serving on host:port, its state folder mounted, stopped like `docker stop`."""

    def __init__(self, image: str, *, port: int, state: str, env: dict[str, str], host: str = "127.0.0.1",
                 engine_name: str | None = None, state_dir: str = "/var/lib/purchase-serving",
                 output: Path | None = None):  # fmt: skip
        self.image, self.port, self.host, self.state, self.env = image, port, host, state, env
        self.engine = engine_name or engine(image)
        self.name = f"purchase-serving-{uuid.uuid4().hex[:8]}"
        self.state_dir = state_dir
        self.output = open(output, "wb") if output else None
        self.process: subprocess.Popen | None = None
        self._tree: list[psutil.Process] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        env_args = [arg for key, value in self.env.items() for arg in ("-e", f"{key}={value}")]
        if self.engine in ("docker", "podman"):
            return [self.engine, "run", "--rm", "--name", self.name, "-p", f"{self.host}:{self.port}:{CONTAINER_PORT}",
                    "-v", f"{self.state}:{self.state_dir}", *env_args, self.image]  # fmt: skip
        # buildah runs no entrypoint of its own: the image's, as its config gives it.
        config = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", self.image], check=True,
                                           capture_output=True, text=True).stdout)["OCIv1"]["config"]  # fmt: skip
        entrypoint = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
        return ["buildah", "run", "--isolation", "chroot", "-v", f"{self.state}:{self.state_dir}",
                "-e", f"BENTOML_HOST={self.host}", "-e", f"BENTOML_PORT={self.port}", *env_args,
                self.name, "--", *entrypoint]  # fmt: skip

    def start(self) -> Container:
        if self.engine == "buildah":
            # The host folder is the volume: the image's user (uid 1034, no user namespace here) must own it.
            Path(self.state).mkdir(parents=True, exist_ok=True)
            os.chown(self.state, BENTO_UID, BENTO_UID)
            subprocess.run(["buildah", "from", "--name", self.name, self.image], check=True, capture_output=True)
        self.process = subprocess.Popen(self.command(), stdout=self.output, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        return self

    def wait_until_ready(self, timeout: float = 300) -> Container:
        """Until /readyz answers 200 (every model loaded); raises if the container exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the container exited {self.process.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.url}/readyz did not answer 200 within {timeout} s")

    def main_process(self, timeout: float = 60) -> psutil.Process:
        """The container's first process (what PID 1 is in a real container): under buildah, the child of its
        chroot helper; signalling `buildah run` itself kills the server without draining."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                try:
                    if child.parent().cmdline()[:1] == ["buildah-chroot-exec"]:
                        return child
                except psutil.NoSuchProcess:
                    continue
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"no main process under buildah run (exit {self.process.poll()})")

    def terminate(self) -> None:
        """SIGTERM to the container's main process, as `docker stop` sends it (buildah engine)."""
        main = self.main_process()
        self._tree = [main, *main.children(recursive=True)]
        main.send_signal(signal.SIGTERM)

    def stop(self, grace: float = 30) -> int | None:
        """SIGTERM to the server, SIGKILL after `grace` seconds; returns the container's exit status."""
        if self.process is None:
            return None
        if self.engine in ("docker", "podman"):
            subprocess.run([self.engine, "stop", "-t", str(int(grace)), self.name], capture_output=True)
        elif self.process.poll() is None:
            self.terminate()
        try:
            status = self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            status = None
        # No PID namespace under chroot isolation: what outlived the server is killed here, as the kernel would.
        for leftover in self._tree:
            try:
                leftover.kill()
            except psutil.NoSuchProcess:
                pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        if self.engine == "buildah":
            subprocess.run(["buildah", "rm", self.name], capture_output=True)
        if self.output:
            self.output.close()
        return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", default=f"{os.environ.get('IMAGE') or 'localhost/purchase-serving'}:latest",
                        help="the image to run (IMAGE=name, as for `make container`, runs name:latest)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 3000))
    parser.add_argument("--host", default=os.environ.get("HOST") or "127.0.0.1",
                        help="host address the port is published on (0.0.0.0 exposes it to the network)")
    parser.add_argument("--state", default=None,
                        help="the state volume: a named volume (docker, podman) or a host folder (buildah)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    chosen = engine(args.image)
    state = args.state or ("purchase-serving-state" if chosen in ("docker", "podman") else str(DEFAULT_STATE))
    env = {**settings_from_environment(), **dict(item.split("=", 1) for item in args.env)}
    container = Container(args.image, port=args.port, host=args.host, state=state, env=env, engine_name=chosen)
    print(f"{chosen}: {args.image} on {container.url}, state on {state}; Ctrl-C stops it", flush=True)
    # The handler only interrupts the wait: stopping inside it would wait on the process the main thread waits on.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    container.start()
    try:
        container.process.wait()
    except Interrupted:
        pass
    finally:
        status = container.stop()
    return status or 0


class Interrupted(Exception):
    """Ctrl-C or SIGTERM to `make container-run`."""


def _interrupt(*_) -> None:
    raise Interrupted


if __name__ == "__main__":
    sys.exit(main())
