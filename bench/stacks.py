"""py-spy's raw collapsed stacks read into tables (bench/profile.py records them): busy samples by frame, by
package, by thread, and the shares of the frames to watch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


# Leaf frames of a thread that waits (anyio's idle worker threads, the drift gauges' timer, the thread that reaps
# the log's maintenance process in waitpid): not work.
IDLE_LEAVES = ("Condition.wait (threading.py)", "Event.wait (threading.py)", "Queue.get (queue.py)",
               "Thread.join (threading.py)", "select (selectors.py)", "Popen._try_wait (subprocess.py)",
               "_worker (concurrent/futures/thread.py)")  # an executor thread waiting in SimpleQueue.get (C)


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
    for frames, samples in _stacks(collapsed):
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


# The frames issue 21's profile quoted (function names, matched at the start of a frame), and those of the log that
# replaced its JSON lines (a batch's Arrow encoding, the segment's write, compaction); --watch replaces them.
WATCH = ("Predictor.score", "predict_proba", "Predictor._log", "to_lines", "PredictionLog.write", "new_ids",
         "PredictionLog._maintain", "FeatureSignals.observe", "PredictionLog.append", "encode", "StreamSegment.write",
         "compact")


def _stacks(collapsed: Path):
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def watched(collapsed: Path, names: tuple[str, ...]) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Inclusive shares of all busy samples: of each watched function, and of each thread (py-spy --threads puts
    the thread as the first frame)."""
    busy = 0
    hits: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, samples in _stacks(collapsed):
        if frames[-1] in IDLE_LEAVES:
            continue
        busy += samples
        if frames[0].startswith("thread ") or frames[0].startswith("process "):
            threads[frames[0] if frames[0].startswith("thread ") else frames[1]] += samples
        functions = {frame.split(" (")[0] for frame in frames}
        for name in names:  # `predict_proba` matches `Pipeline.predict_proba`; `Predictor.score` only itself
            if any(f == name or f.endswith("." + name) for f in functions):
                hits[name] += samples
    if not busy:
        return [], []
    return [(name, hits[name] / busy) for name in names], [(t, n / busy) for t, n in threads.most_common(10)]


def summary(collapsed: Path, heading: str, watch: tuple[str, ...] = WATCH,
            cores: dict[int, float] | None = None) -> list[str]:
    """`cores`: each thread's CPU seconds over the recording's wall time, the ground truth beside py-spy's shares
    (py-spy counts a thread as busy whenever the kernel does not report it asleep)."""
    total, busy, rows, packages = top_frames(collapsed)
    lines = [heading, "", f"{busy} busy samples of {total} (stacks ending in a wait excluded: "
             + ", ".join(f"`{leaf}`" for leaf in IDLE_LEAVES) + "). `Runner.run` self is uvloop's C code: its work, "
             "and waits py-spy did not see as sleep (the CPU column below tells them apart).", ""]
    frames, threads = watched(collapsed, watch)
    if frames:
        lines += ["Watched frames (inclusive share of the busy samples; `not seen` = no sample, the name may have "
                  "changed: pass `--watch`):", "", "| frame | inclusive |", "|---|---|"]
        lines += [f"| `{name}` | {f'{share:.1%}' if share else 'not seen'} |" for name, share in frames]
        lines += [""]
    if threads:
        def used(name: str) -> str:
            tid = name.partition("(")[2].partition(")")[0]
            return f"{cores[int(tid)]:.0%}" if cores and tid.isdigit() and int(tid) in cores else "-"

        lines += ["Threads of the worker: py-spy's share of the busy samples, and the CPU the thread really used "
                  "(its CPU seconds over the recording's wall time, from /proc). A thread whose share is far above "
                  "its CPU waited where py-spy could not tell (in C, or for a core on a busy machine).", "",
                  "| thread | py-spy share | CPU used |", "|---|---|---|"]
        lines += [f"| `{name}` | {share:.1%} | {used(name)} |" for name, share in threads] + [""]
    lines += ["Self time by package (leaf frame's top-level package or module):", "", "| package | self |", "|---|---|"]
    lines += [f"| `{name}` | {share:.1%} |" for name, share in packages]
    lines += ["", "Frames by inclusive share:", "", "| frame | inclusive | self |", "|---|---|---|"]
    lines += [f"| `{frame}` | {inc:.1%} | {own:.1%} |" for frame, inc, own in rows]
    return lines
