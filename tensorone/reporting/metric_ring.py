"""The trainer's last metric records, kept in memory and served in pages at ``GET /metric-events``.

The operator reads the records after the last one it has (``?after=SEQ``) following each
``/progress`` poll, and keeps them in the job's metric store (tensorone.api.events). Keeping a
record costs an append to a bounded deque; the records are turned into JSON only when asked for.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from datetime import UTC, datetime
from typing import Literal

from tensorone.api.events import MAX_PAGE_RECORDS, RING_RECORDS, MetricRecord

# seq, kind, step, time (epoch seconds), epoch, loss, learning rate, grad norm, tokens/s, samples/s, eval loss
_Kept = tuple[
    int,
    Literal["step", "eval"],
    int,
    float,
    int | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
    float | None,
]


class MetricRing:
    """The newest ``size`` records of this process, each numbered from 1 (``seq``)."""

    def __init__(self, size: int = RING_RECORDS) -> None:
        self._records: deque[_Kept] = deque(maxlen=size)
        self._lock = threading.Lock()
        self._read = threading.Condition(self._lock)
        self._seq = 0
        self._served = 0  # the last record a page has held

    def step(
        self,
        step: int,
        *,
        time: float,
        epoch: int | None,
        loss: float,
        learning_rate: float | None,
        grad_norm: float | None,
        tokens: int,
        samples: int,
        seconds: float,
    ) -> None:
        """One optimizer step (``tokens`` and ``samples`` over every process, in ``seconds``)."""
        tokens_per_second = tokens / seconds if seconds > 0 and tokens else None
        samples_per_second = samples / seconds if seconds > 0 and samples else None
        with self._lock:
            self._seq += 1
            self._records.append(
                (
                    self._seq,
                    "step",
                    step,
                    time,
                    epoch,
                    loss,
                    learning_rate,
                    grad_norm,
                    tokens_per_second,
                    samples_per_second,
                    None,
                )
            )

    def eval(self, step: int, loss: float, *, time: float, epoch: int | None) -> None:
        """An evaluation after ``step``."""
        with self._lock:
            self._seq += 1
            self._records.append((self._seq, "eval", step, time, epoch, None, None, None, None, None, loss))

    def page(self, after: int, limit: int = MAX_PAGE_RECORDS) -> list[MetricRecord]:
        """Up to ``limit`` records after ``seq`` ``after``, oldest first."""
        with self._lock:
            kept = list(self._records)
        first = next((i for i, record in enumerate(kept) if record[0] > after), len(kept))
        chosen = kept[first : first + max(0, min(limit, MAX_PAGE_RECORDS))]
        if chosen:
            with self._read:
                self._served = max(self._served, chosen[-1][0])
                self._read.notify_all()
        return [_record(kept_record) for kept_record in chosen]

    def wait_read(self, seconds: float) -> bool:
        """Wait up to ``seconds`` until a page has held the last record; whether one has."""
        with self._read:
            return self._read.wait_for(lambda: self._served >= self._seq, timeout=seconds)

    def page_json(self, after: int, limit: int = MAX_PAGE_RECORDS) -> bytes:
        """The page as ``GET /metric-events`` serves it."""
        records = [record.to_wire() for record in self.page(after, limit)]
        return json.dumps({"records": records}, separators=(",", ":")).encode()


def _record(kept: _Kept) -> MetricRecord:
    seq, kind, step, time, epoch, loss, learning_rate, grad_norm, tokens, samples, eval_loss = kept
    # Not validated here: the reader checks every bound (a custom script may report anything).
    return MetricRecord.model_construct(
        seq=seq,
        kind=kind,
        step=step,
        time=datetime.fromtimestamp(time, UTC),
        epoch=epoch,
        loss=loss,
        learning_rate=learning_rate,
        grad_norm=grad_norm,
        tokens_per_second=tokens,
        samples_per_second=samples,
        eval_loss=eval_loss,
    )
