"""`make serve`: check the port and the settings, train the default models if the store lacks them, serve.

    python -m serving.serve [--host 127.0.0.1] [--port 3000]

The cheap checks come first, so a busy port or contradicting settings cost one line and no training. Then this
process becomes `bentoml serve .` (exec), so signals and the exit status are the server's own.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from serving.web.startup import check_port, check_settings

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0 exposes the server")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    check_port(args.host, args.port)
    check_settings()
    trained = subprocess.run([sys.executable, "-m", "training.train", "--if-missing"], cwd=ROOT, check=False)
    if trained.returncode != 0:
        return trained.returncode
    bentoml = str(Path(sys.executable).parent / "bentoml")
    os.chdir(ROOT)
    os.execv(bentoml, [bentoml, "serve", ".", "--host", args.host, "--port", str(args.port)])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
