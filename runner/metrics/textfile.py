"""The node_exporter textfile: written atomically at the end of every run, and merged with what the
file already holds, so that a run of job A keeps job B's series as B's last run wrote them.

Counters and histograms of this process are added to the file's values (only what was counted since
this process last wrote the file), gauges replace the file's value of the same series, and every
other series is kept. Processes finishing at the same moment take turns (a lock file beside it).
The pool gauges describe a live process and are left out; the daemon serves them on /metrics.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from runner.metrics.registry import RunMetrics

Key = tuple[str, tuple[tuple[str, str], ...]]
_ADDED = ("counter", "histogram")
_SUFFIX = {"_bucket": 0, "_count": 1, "_sum": 2}

log = logging.getLogger("runner.metrics")


class _Families:
    """A collector that yields fixed metric families."""

    def __init__(self, families: Iterable[Metric]):
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


def _key(sample: Any) -> Key:
    return sample.name, tuple(sorted(sample.labels.items()))


def _order(item: tuple[Key, float]) -> tuple[Any, ...]:
    (name, labels), _ = item
    rest = tuple((k, v) for k, v in labels if k != "le")
    le = dict(labels).get("le")
    suffix = next((rank for s, rank in _SUFFIX.items() if name.endswith(s)), 3)
    return rest, suffix, float(le) if le is not None else 0.0, name


class TextfileWriter:
    """Writes a RunMetrics registry to `path`, merged with the file's earlier content."""

    def __init__(self, metrics: RunMetrics, path: str):
        self.metrics = metrics
        self.path = Path(path)
        self._written: dict[Key, float] = {}  # what this process added to the file so far

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            old = self._read()
            families = self._merge(old)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Families(families))
            write_to_textfile(str(self.path), registry)  # a temporary file renamed over it
            os.chmod(self.path, 0o644)  # node_exporter runs as another user

    def _read(self) -> list[Metric]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except UnicodeDecodeError:  # not a text file at all: it would fail every run's write, and stay so
            text = None
        if text is not None:
            try:
                return list(text_string_to_metric_families(text))
            except ValueError:
                pass
        log.warning("metrics textfile %s is not a Prometheus text file (not ours, or cut short): it is written "
                    "anew with this process's series; what it held is not added up", self.path)
        return []

    def _merge(self, old: list[Metric]) -> list[Metric]:
        merged: dict[str, tuple[Metric, dict[Key, float]]] = {}
        for fam in old:
            merged[fam.name] = (fam, {_key(s): s.value for s in fam.samples})
        now: dict[Key, float] = {}
        for fam in self.metrics.registry.collect():
            if fam.name == "runner_pool_connections":
                continue
            base, values = merged.get(fam.name, (fam, {}))
            for s in fam.samples:
                k = _key(s)
                now[k] = s.value
                if fam.type in _ADDED:
                    values[k] = values.get(k, 0.0) + s.value - self._written.get(k, 0.0)
                else:
                    values[k] = s.value
            merged[fam.name] = (base if base.type == fam.type else fam, values)
        self._written = now
        out = []
        for fam, values in merged.values():
            m = Metric(fam.name, fam.documentation, fam.type)
            for (name, labels), value in sorted(values.items(), key=_order):
                if not math.isnan(value):
                    m.add_sample(name, dict(labels), value)
            out.append(m)
        return out
