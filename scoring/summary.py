"""The job's end-of-run summary: what a morning run's log shows, and what a scheduler can read back as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Summary:
    engine: str
    model: str  # the exact name:version that scored every row
    input: str
    output: str
    rejects: str
    rows_in: int
    scored: int
    rejected: int
    positives: int
    seconds: float
    logged: int = 0  # rows appended to the prediction log

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds if self.seconds > 0 else 0.0

    @property
    def positive_share(self) -> float:
        return self.positives / self.scored if self.scored else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "rows_per_second": round(self.rows_per_second, 1), "positive_share": self.positive_share}

    def text(self) -> str:
        lines = [
            f"model:          {self.model} ({self.engine} engine)",
            f"input:          {self.input}",
            f"rows in:        {self.rows_in:,}",
            f"scored:         {self.scored:,} -> {self.output}",
            f"rejected:       {self.rejected:,} -> {self.rejects}",
            f"predicted 1:    {self.positives:,} ({self.positive_share:.1%} of scored)",
            f"time:           {self.seconds:.1f} s ({self.rows_per_second:,.0f} rows/s)",
        ]
        if self.logged:
            lines.append(f"prediction log: {self.logged:,} rows appended")
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
