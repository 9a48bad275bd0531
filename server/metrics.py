"""Prometheus metrics in the text exposition format (v0.0.4), hand-rolled: counters and histograms with labels.

Each uvicorn worker process keeps its own numbers (scrape each worker, or run one worker per container).
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str]) -> Labels:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(labels: Labels, extra: Labels = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in items) + "}"


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self._values[_labels(labels)] += amount

    def value(self, **labels: str) -> float:
        return self._values.get(_labels(labels), 0.0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        lines += [f"{self.name}{_format_labels(k)} {_format_value(v)}" for k, v in sorted(self._values.items())]
        return lines


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(labels)
        counts = self._counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf
        self._sums[key] += value

    def count(self, **labels: str) -> int:
        counts = self._counts.get(_labels(labels))
        return counts[-1] if counts else 0

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, counts in sorted(self._counts.items()):
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                lines.append(f"{self.name}_bucket{_format_labels(key, (('le', _format_value(bound)),))} {count}")
            lines.append(f"{self.name}_sum{_format_labels(key)} {_format_value(self._sums[key])}")
            lines.append(f"{self.name}_count{_format_labels(key)} {counts[-1]}")
        return lines


class Metrics:
    """The service's metrics. Thread-safe: updated from the event loop, read by the /metrics handler."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter("vqnat_http_requests_total",
                                "HTTP responses sent, by endpoint, method and status code.")
        self.disconnects = Counter("vqnat_http_client_disconnects_total",
                                   "Requests whose client went away before any response was sent.")
        self.request_latency = Histogram("vqnat_http_request_duration_seconds",
                                         "Time from request received to response sent, by endpoint.",
                                         LATENCY_BUCKETS)
        self.sentences = Counter("vqnat_sentences_translated_total", "Sentences translated, by model.")
        self.batch_size = Histogram("vqnat_batch_size_sentences", "Sentences per model batch, by model.",
                                    BATCH_BUCKETS)
        self.batch_latency = Histogram("vqnat_batch_duration_seconds", "Model time per batch, by model.",
                                       LATENCY_BUCKETS)
        self.queue_wait = Histogram("vqnat_queue_wait_seconds",
                                    "Time a sentence waited in the batching queue, by model.", LATENCY_BUCKETS)

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc(endpoint=endpoint, method=method, status=str(status))
            self.request_latency.observe(seconds, endpoint=endpoint)

    def observe_disconnect(self, endpoint: str, method: str) -> None:
        with self._lock:
            self.disconnects.inc(endpoint=endpoint, method=method)

    def observe_batch(self, model: str, sentences: int, seconds: float, waits: Sequence[float]) -> None:
        with self._lock:
            self.sentences.inc(sentences, model=model)
            self.batch_size.observe(sentences, model=model)
            self.batch_latency.observe(seconds, model=model)
            for wait in waits:
                self.queue_wait.observe(wait, model=model)

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []
            for metric in (self.requests, self.disconnects, self.request_latency, self.sentences, self.batch_size,
                           self.batch_latency, self.queue_wait):
                lines += metric.render()
        return "\n".join(lines) + "\n"
