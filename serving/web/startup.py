"""What a server start checks and prepares before BentoML starts anything: the port, the settings, and a
Prometheus multiprocess folder of its own.

`bentoml serve` imports service.py (which calls `prepare_serve()`) before it starts its servers, and BentoML
1.4's `serve_http` then empties the folder that `BentoMLContainer.prometheus_multiproc_dir` names (by default
`$BENTOML_HOME/prometheus_multiproc_dir`, shared by every server on that home) as its first step, even when the
start then fails on a busy port. Pointing that provider at a fresh folder per server process means no start,
failed or not, touches another server's metrics. The workers inherit the folder through the
`PROMETHEUS_MULTIPROC_DIR` that BentoML passes them, so nothing else changes.
"""

from __future__ import annotations

import atexit
import errno
import shutil
import socket
import sys
import tempfile

import click
from pydantic import ValidationError

from settings import get_settings, settings_error


class StartRefused(SystemExit):
    """A start that cannot succeed: one line on stderr, exit status 1 (argparse and click use 2 for usage)."""

    def __init__(self, message: str):
        print(message, file=sys.stderr, flush=True)
        super().__init__(1)


def port_in_use(host: str, port: int) -> OSError | None:
    """The error binding (host, port) gives now, or None when the port is free.

    SO_REUSEADDR as the server's own socket sets it: connections in TIME_WAIT from a stopped server do not count
    as "in use", a listening socket does (also one on another address of the same port, e.g. 127.0.0.1 vs 0.0.0.0).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def check_port(host: str, port: int) -> None:
    error = port_in_use(host, port)
    if error is None:
        return
    if error.errno == errno.EADDRINUSE:
        raise StartRefused(
            f"error: port {port} on {host} is already in use (another server?); "
            f"choose another one, e.g. `make serve PORT={port + 1}`"
        )
    raise StartRefused(f"error: cannot listen on {host}:{port}: {error.strerror or error}")


def check_settings() -> None:
    try:
        get_settings()
    except ValidationError as exc:
        raise StartRefused(f"error: {settings_error(exc)}") from None


def own_metrics_folder() -> str:
    """A fresh Prometheus multiprocess folder for this server, removed when the server process exits."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    folder = tempfile.mkdtemp(prefix="bentoml-prometheus-")
    BentoMLContainer.prometheus_multiproc_dir.set(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _serve_command() -> click.Context | None:
    """The `bentoml serve` command being run in this process, if any (not a worker, a build or a test import)."""
    context = click.get_current_context(silent=True)
    if context is None or context.command.name not in ("serve", "serve-http"):
        return None
    if not (context.command.callback and context.command.callback.__module__.startswith("bentoml_cli")):
        return None
    return context


def prepare_serve() -> None:
    """In the `bentoml serve` process only: refuse a busy port or contradicting settings in one line, and give
    this server its own metrics folder. A no-op anywhere else (workers, `bentoml build`, imports in tests)."""
    context = _serve_command()
    if context is None:
        return
    from bentoml._internal.configuration.containers import BentoMLContainer

    host = context.params.get("host") or BentoMLContainer.http.host.get()
    port = context.params.get("port") or BentoMLContainer.http.port.get()
    check_port(host, int(port))
    check_settings()
    own_metrics_folder()


# Runs when service.py imports this module, which it does first: before serving/web/gate.py reads the settings and
# before `bentoml serve` starts anything.
prepare_serve()
