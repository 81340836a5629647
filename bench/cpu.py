"""Who used the cores while a scenario measured: CPU seconds per process tree (the bench's driver with the tools it
ran, its load process, every server), as cores busy on average over the scenario. On a 2-core machine a server that
is not under test but keeps a core busy (a compaction, a timer) skews whatever is measured beside it."""

from __future__ import annotations

import os
import time

from bench.servers import tree_sum


def _tree_seconds(pid: int) -> float:
    return tree_sum(pid, lambda process: sum(process.cpu_times()[:2]))  # user + system


def _driver_seconds() -> float:
    """This process and its finished children (hey, curl), not its live load process (counted on its own)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class CoreUse:
    """`with CoreUse(trees) as use:` ... `use.cores` maps each tree (and "bench driver") to cores busy on average."""

    def __init__(self, trees: dict[str, int]):
        self.trees = trees
        self.cores: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        return {"bench driver": _driver_seconds(), **{name: _tree_seconds(pid) for name, pid in self.trees.items()}}

    def __enter__(self) -> "CoreUse":
        self._start, self._wall = self._sample(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._wall
        end = self._sample()
        self.cores = {name: max(0.0, end[name] - self._start[name]) / wall for name in end} if wall > 0 else {}
