"""py-spy of the service's worker process under load: where a request's time goes.

    python -m bench.profile --seconds 20 --concurrency 32 --out bench/results/profile
    python -m bench.profile --door v2 --rows 10000 --concurrency 1 --rate 200 --out bench/results/profile_v2

`--door predict` (the default) loads `/predict` with single records; `--door v2` sends `--rows`-row Open Inference
Protocol bodies (the columnar V2 JSON of bench/mlserver_peer.py) back to back to `/v2/models/purchase_gbm/infer`.

Starts `bentoml serve` (default settings, the trained store copied to a temporary home), warms it up, then loads
`/predict` from a separate process while `py-spy record` samples the worker (not BentoML's supervisor). Writes
`profile.speedscope.json` (open it at speedscope.app or in any speedscope viewer), `profile.txt` (py-spy's raw
collapsed stacks) and `top.md`: the functions holding the most samples, inclusive and self, as shares.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("DO_NOT_TRACK", "1")


def worker_pid(pid: int) -> int:
    """BentoML's worker: the descendant of `bentoml serve` that runs the service (`_bentoml_impl.worker`)."""
    import psutil

    for child in psutil.Process(pid).children(recursive=True):
        if any("worker" in part for part in child.cmdline()):
            return child.pid
    raise RuntimeError(f"no BentoML worker under pid {pid}")


# Leaf frames of a thread that waits (anyio's idle worker threads, the drift gauges' timer): not work.
IDLE_LEAVES = ("Condition.wait (threading.py)", "Event.wait (threading.py)", "Queue.get (queue.py)",
               "Thread.join (threading.py)", "select (selectors.py)")


def _package(frame: str) -> str:
    """`func (path/to/module.py)` -> the top-level package (or the project's module) that holds it."""
    path = frame.rpartition("(")[2].rstrip(")")
    return path.split("/")[0].removesuffix(".py") if "/" in path else path.removesuffix(".py")


def top_frames(collapsed: Path, limit: int = 40) -> tuple[int, int, list[tuple[str, float, float]], list[tuple[str, float]]]:
    """From py-spy's raw collapsed stacks: (all samples, busy samples, [(frame, inclusive, self)] and
    [(package, self)] as shares of the busy samples). Busy = the leaf is not a wait (IDLE_LEAVES)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = busy = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        if frames[-1] in IDLE_LEAVES:
            continue
        busy += samples
        for frame in set(frames):
            inclusive[frame] += samples
        own[frames[-1]] += samples
        packages[_package(frames[-1])] += samples
    if not busy:
        return total, 0, [], []
    rows = [(frame, n / busy, own[frame] / busy) for frame, n in inclusive.most_common(limit)]
    return total, busy, rows, [(name, n / busy) for name, n in packages.most_common(15)]


def summary(collapsed: Path, heading: str) -> list[str]:
    total, busy, rows, packages = top_frames(collapsed)
    lines = [heading, "", f"{busy} busy samples of {total} (stacks ending in a wait excluded: "
             + ", ".join(f"`{leaf}`" for leaf in IDLE_LEAVES) + "). uvloop's own work shows as `Runner.run` self.", "",
             "Self time by package (leaf frame's top-level package or module):", "", "| package | self |", "|---|---|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in packages]
    lines += ["", "Frames by inclusive share:", "", "| frame | inclusive | self |", "|---|---|---|"]
    lines += [f"| `{frame}` | {inc:.1%} | {own:.1%} |" for frame, inc, own in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    parser.add_argument("--root", type=Path, default=None, help="serve this project checkout instead of this one")
    parser.add_argument("--env", action="append", default=[], help="extra server setting, NAME=VALUE (repeatable)")
    parser.add_argument("--door", choices=("predict", "v2"), default="predict", help="which door the load uses")
    parser.add_argument("--rows", type=int, default=10_000, help="rows per request with --door v2")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    import orjson

    from bench.load import LoadProcess
    from bench.servers import private_store, start_bento
    from training.data import generate_purchase

    workdir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    os.environ["BENTOML_HOME"] = str(private_store(Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")), workdir))
    env = dict(item.split("=", 1) for item in args.env)
    server = start_bento("profile", workdir, env, root=args.root)
    loader = LoadProcess()
    try:
        if args.door == "v2":
            from bench.doors import V2_PATH
            from bench.mlserver_peer import v2_request

            frame = generate_purchase(args.rows, seed=7).drop(columns="purchased")
            loader.set_bodies("one", [orjson.dumps(v2_request(frame))])
            url = server.url + V2_PATH
        else:
            records = generate_purchase(512, seed=7).drop(columns="purchased").to_dict("records")
            loader.set_bodies("one", [orjson.dumps(r) for r in records])
            url = server.url + "/predict"
        loader.run(url, "one", args.concurrency, args.concurrency * 20, 3.0)
        pid = worker_pid(server.pid)
        results = {}
        load = threading.Thread(target=lambda: results.setdefault(
            "load", loader.run(url, "one", args.concurrency, 10**7, args.seconds + 4.0)))
        load.start()
        spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--rate", str(args.rate)]
        subprocess.run([*spy, "--duration", str(args.seconds), "--nolineno", "--format", "raw",
                        "--output", str(args.out / "profile.txt")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load.join()
        first = results["load"]
        # a second, speedscope-format recording for viewing; the table below is from the first
        load = threading.Thread(target=lambda: loader.run(url, "one", args.concurrency, 10**7, min(args.seconds, 10) + 3.0))
        load.start()
        subprocess.run([*spy, "--duration", str(min(args.seconds, 10)), "--format", "speedscope", "--output",
                        str(args.out / "profile.speedscope.json")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        load.join()
    finally:
        loader.close()
        server.stop()
    door = "/predict" if args.door == "predict" else f"{args.rows:,}-row V2 bodies"
    lines = summary(args.out / "profile.txt", f"# py-spy of the worker under {door}, concurrency {args.concurrency}")
    lines[1:1] = ["", f"`python -m bench.profile {' '.join(argv if argv is not None else sys.argv[1:])}`; load during the "
                  f"recording: {first.throughput:.0f} req/s, p50 {first.percentile(50) * 1e3:.1f} ms, p99 "
                  f"{first.percentile(99) * 1e3:.1f} ms, {first.errors} errors."]
    (args.out / "top.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
