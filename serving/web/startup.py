"""What a server start checks and prepares before BentoML starts anything: the port, the settings (and what they
name in the model store), a Prometheus multiprocess folder of its own, and the folder of its core tokens.

`bentoml serve` imports service.py (which calls `prepare_serve()`) before it starts its servers, and BentoML
1.4's `serve_http` then empties its Prometheus multiprocess folder (serving/seam.py; by default
`$BENTOML_HOME/prometheus_multiproc_dir`, shared by every server on that home) as its first step, even when the
start then fails on a busy port. Pointing that provider at a fresh folder per server process means no start,
failed or not, touches another server's metrics. The workers inherit the folder through the
`PROMETHEUS_MULTIPROC_DIR` that BentoML passes them, so nothing else changes.

The core tokens (serving/core/threads.py) are files in a folder of this server's own, which the workers find in
`CORE_TOKENS_DIR`: BentoML's workers get the environment of the `bentoml serve` process.
"""

from __future__ import annotations

import os

# libgomp reads its wait policy once, when it loads (with scikit-learn, which the imports below bring in): a
# thread waiting at a barrier then sleeps instead of spinning, so a model call's second OpenMP thread costs no CPU
# where it cannot run (serving/core/threads.py). Here, because service.py imports this module first, in the
# `bentoml serve` process and in each worker. An explicit OMP_WAIT_POLICY or GOMP_SPINCOUNT is respected.
if "GOMP_SPINCOUNT" not in os.environ:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import atexit  # noqa: E402
import errno  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from serving.seam import serve_address, use_metrics_folder  # noqa: E402
from settings import Settings, get_settings, settings_error  # noqa: E402
from training.store import may_serve, parse_ref  # noqa: E402

CORE_TOKENS_DIR = "CORE_TOKENS_DIR"  # settings.core_tokens_dir in the workers


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


def check_served(settings: Settings) -> None:
    """What the settings name must be servable: a default or an A/B arm that nothing in SERVED_MODELS could ever
    load would only show up as 503s. Raises ValueError naming the variable. (An alias whose stage is empty now is
    not refused: the store may fill it; an A/B arm on it is taken out of the split meanwhile, serving/core/routing.py.)"""
    for variable, tags in (("SERVED_MODELS", settings.served_models), ("SHADOW_MODELS", settings.shadow_models),
                           ("AB_WEIGHTS", list(settings.ab_weights)), ("DEFAULT_PURCHASE_MODEL", [settings.default_purchase_model])):
        for tag in tags:
            try:
                parse_ref(tag)
            except ValueError as exc:
                raise ValueError(f"{variable}: {exc}") from None
    served = list(settings.served_models)
    listed = ", ".join(served) or "nothing"
    if not may_serve(settings.default_purchase_model, served):
        raise ValueError(
            f"DEFAULT_PURCHASE_MODEL={settings.default_purchase_model} is not loaded by SERVED_MODELS ({listed}); "
            "add it there or choose one of the served models"
        )
    missing = [name for name in settings.ab_weights if not may_serve(name, served)]
    if missing:
        raise ValueError(f"AB_WEIGHTS names {', '.join(missing)}, which SERVED_MODELS ({listed}) does not load")


def check_settings() -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise StartRefused(f"error: {settings_error(exc)}") from None
    try:
        check_served(settings)
    except ValueError as exc:
        raise StartRefused(f"error: invalid settings: {exc}") from None


def own_metrics_folder() -> str:
    """A fresh Prometheus multiprocess folder for this server, removed when the server process exits."""
    folder = tempfile.mkdtemp(prefix="bentoml-prometheus-")
    use_metrics_folder(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def own_core_tokens() -> str:
    """A folder for this server's core tokens, shared by its workers, removed when the server process exits; or
    the folder CORE_TOKENS_DIR names already (servers on one host that share their cores), kept."""
    given = get_settings().core_tokens_dir
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        return str(given)
    folder = tempfile.mkdtemp(prefix="purchase-serving-cores-")
    os.environ[CORE_TOKENS_DIR] = folder
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def prepare_serve() -> None:
    """In the `bentoml serve` process only: refuse a busy port or contradicting settings in one line, and give
    this server its own metrics folder and core tokens. A no-op anywhere else (workers, `bentoml build`, imports in tests)."""
    address = serve_address()
    if address is None:
        return
    check_port(*address)
    check_settings()
    own_metrics_folder()
    own_core_tokens()


# Runs when service.py imports this module, which it does first: before anything reads the settings and before
# `bentoml serve` starts anything.
prepare_serve()
