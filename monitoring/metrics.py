"""Our own Prometheus metrics, next to django-prometheus's request metrics, served at /metrics.

Registration point: each app exposes a function `collect() -> Iterable[Metric]` (prometheus_client
metric families built from its own selectors) and the dotted path is listed in the setting
`MONITORING_METRIC_SOURCES`. One collector calls every source at scrape time; a source's result is
cached for `MONITORING_METRICS_CACHE_SECONDS` (the database is not queried on every scrape) and a
failing source is reported as `churnshield_metrics_source_up{source="..."} 0` instead of
breaking the whole scrape.

Values come from the database and Redis, not from in-process counters, so every web process
reports the same numbers whatever process (worker, beat) did the work.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.utils.module_loading import import_string
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)
Source = Callable[[], Iterable[Metric]]


class ChurnShieldCollector(Collector):
    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, list[Metric]]] = {}
        self._lock = threading.Lock()

    def sources(self) -> list[str]:
        return list(getattr(settings, "MONITORING_METRIC_SOURCES", []))

    def _collect_source(self, path: str) -> list[Metric]:
        ttl = getattr(settings, "MONITORING_METRICS_CACHE_SECONDS", 15)
        cached = self._cache.get(path)
        if cached and time.monotonic() - cached[0] < ttl:
            return cached[1]
        source: Source = import_string(path)
        metrics = list(source())
        self._cache[path] = (time.monotonic(), metrics)
        return metrics

    def describe(self) -> Iterable[Metric]:
        # Without describe(), registering would call collect() and query the DB at import time.
        return []

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("churnshield_metrics_source_up", "1 if the metrics source answered", labels=["source"])
        families: list[Metric] = []
        with self._lock:
            for path in self.sources():
                try:
                    families.extend(self._collect_source(path))
                    up.add_metric([path], 1)
                except Exception:
                    logger.exception("metrics source %s failed", path)
                    up.add_metric([path], 0)
        yield from families
        yield up

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()


collector = ChurnShieldCollector()
_installed = False


def install() -> None:
    """Register the collector once per process (AppConfig.ready)."""
    global _installed
    if not _installed:
        REGISTRY.register(collector)
        _installed = True
