"""The tools the bench checks its own client against, none of them written here: `hey` (Debian's package) for load,
`curl` for single big requests. Both send bodies from files and never ask for a compressed answer, like the bench's
own clients (MLServer gzips its answers when asked, and an answer compressed for one server only is not a fair
comparison: see docs/benchmarks.md).

    apt-get install -y hey curl      # or `make bench-tools`; .ci/run installs them for the CI smoke
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from bench.load import Round

INSTALL = "apt-get install -y hey curl (Debian's packages; `make bench-tools` runs it, .ci/run too)"


def require() -> dict[str, str]:
    """The tools' paths; stops the bench with the install command when one is missing (never measures without)."""
    paths = {name: shutil.which(name) for name in ("hey", "curl")}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        raise SystemExit(f"the bench checks its figures with {' and '.join(missing)}, which is not installed: {INSTALL}")
    return paths  # type: ignore[return-value]


# --- hey ---------------------------------------------------------------------------------------------------------------

_TOTAL = re.compile(r"^\s*Total:\s+([\d.]+) secs", re.M)
_SLOWEST = re.compile(r"^\s*Slowest:\s+([\d.]+) secs", re.M)
_PERCENTILE = re.compile(r"^\s*(\d+)% in ([\d.]+) secs", re.M)
_STATUS = re.compile(r"^\s*\[(\d+)\]\s+(\d+) responses", re.M)
_ERRORS = re.compile(r"^Error distribution:\n((?:\s+\[\d+\].*\n?)*)", re.M)


def parse_hey(text: str, concurrency: int) -> Round:
    """hey's summary: wall time, the 50% and 99% latency lines, the status codes and the transport errors (hey's CSV
    output drops failed requests, so the summary is read instead)."""
    total = _TOTAL.search(text)
    if total is None:
        raise RuntimeError(f"hey printed no summary:\n{text[-2000:]}")
    percentiles = {int(p): float(s) for p, s in _PERCENTILE.findall(text)}
    slowest = _SLOWEST.search(text)
    if 99 not in percentiles and slowest and percentiles:
        # hey prints a percentile only once i * 100 / n reaches it: under 100 answers there is no 99% line, and the
        # slowest answer is the nearest-rank p99
        percentiles[99] = float(slowest.group(1))
    statuses = {code: int(n) for code, n in _STATUS.findall(text)}
    failed = _ERRORS.search(text)
    transport = sum(int(n) for n in re.findall(r"\[(\d+)\]", failed.group(1))) if failed else 0
    if transport:
        statuses["-1"] = transport  # the bench client's code for a dropped connection
    ok = statuses.get("200", 0)
    return Round(concurrency, ok, sum(statuses.values()) - ok, float(total.group(1)),
                 percentiles.get(50, float("nan")), percentiles.get(99, float("nan")), statuses)


def hey(url: str, body: Path, concurrency: int, seconds: float, content_type: str = "application/json") -> Round:
    """`hey -z Ns -c C -m POST -D body` against `url` (keep-alive, no compression asked)."""
    command = ["hey", "-z", f"{seconds:g}s", "-c", str(concurrency), "-m", "POST", "-T", content_type, "-D", str(body),
               "-t", "60", "-disable-compression", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return parse_hey(done.stdout, concurrency)


# --- curl --------------------------------------------------------------------------------------------------------------

def curl(url: str, body: Path, headers: dict[str, str]) -> float:
    """One POST of `body` with curl; its `%{time_total}` in seconds. curl opens a new connection per call (on
    loopback, a fraction of a millisecond) and sends no Accept-Encoding."""
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--data-binary", f"@{body}"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=600)
    status, _, seconds = done.stdout.partition(" ")
    if done.returncode != 0 or status != "200":
        raise RuntimeError(f"curl {url} answered {status or done.returncode}: {done.stderr[-500:]}")
    return float(seconds)
