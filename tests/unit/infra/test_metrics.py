"""The hot paths' cells (infra/metrics.py): a scrape returns what the plain prometheus-client
metric would have for the same counts and observations, each counted once however often and
from however many threads it is scraped, and a series may be written both ways."""

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from chainflow.infra.metrics import CellCounter, CellHistogram

BUCKETS = (0.05, 0.1, 0.25, 1, 10)
# On a bound (le is inclusive), between bounds, past the last, below zero, zero, NaN (in the
# sum, in no bucket).
AMOUNTS = (0.05, 0.07, 0.1, 0.2500001, 3.0, 10.0, 11.0, 1e9, -1.0, 0.0, float("nan"))


def text_without_created(registry: CollectorRegistry) -> list[str]:
    """The scrape's lines, but the series' creation times (which differ by when each was made)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


class TestCellHistogram:
    def test_a_scrape_equals_the_plain_histograms(self) -> None:
        plain_registry, cell_registry = CollectorRegistry(), CollectorRegistry()
        plain = Histogram("x_seconds", "d", ["stage"], buckets=BUCKETS, registry=plain_registry)
        cells = CellHistogram("x_seconds", "d", ["stage"], buckets=BUCKETS, registry=cell_registry)
        cell = cells.cell("a")
        for amount in AMOUNTS:
            plain.labels("a").observe(amount)
            cell.observe(amount)
        assert text_without_created(cell_registry) == text_without_created(plain_registry)

    def test_each_observation_is_counted_once_over_scrapes(self) -> None:
        registry = CollectorRegistry()
        histogram = CellHistogram("y_seconds", "d", buckets=BUCKETS, registry=registry)
        cell = histogram.cell()
        cell.observe(0.07)
        assert registry.get_sample_value("y_seconds_count") == 1
        assert registry.get_sample_value("y_seconds_count") == 1  # scraped again: still one
        cell.observe(5)
        assert registry.get_sample_value("y_seconds_count") == 2
        assert registry.get_sample_value("y_seconds_sum") == 5.07
        assert registry.get_sample_value("y_seconds_bucket", {"le": "0.1"}) == 1
        assert registry.get_sample_value("y_seconds_bucket", {"le": "10.0"}) == 2


class TestCellCounter:
    def test_a_scrape_equals_the_plain_counters(self) -> None:
        plain_registry, cell_registry = CollectorRegistry(), CollectorRegistry()
        plain = Counter("z", "d", ["to"], registry=plain_registry)
        cells = CellCounter("z", "d", ["to"], registry=cell_registry)
        for to, times in (("signed", 3), ("mined", 1)):
            cell = cells.cell(to)
            for _ in range(times):
                plain.labels(to).inc()
                cell.count += 1
        assert text_without_created(cell_registry) == text_without_created(plain_registry)

    def test_each_count_is_counted_once_over_concurrent_scrapes(self) -> None:
        registry = CollectorRegistry()
        counter = CellCounter("w", "d", ["to"], registry=registry)
        cell = counter.cell("signed")
        scrapes = [threading.Thread(target=generate_latest, args=(registry,)) for _ in range(8)]
        for count, scrape in enumerate(scrapes, start=1):
            cell.count += 1
            scrape.start()
            if count % 2:
                cell.count += 1
        for scrape in scrapes:
            scrape.join()
        assert registry.get_sample_value("w_total", {"to": "signed"}) == 12

    def test_a_series_counted_both_ways_sums_them(self) -> None:
        registry = CollectorRegistry()
        counter = CellCounter("v", "d", ["to"], registry=registry)
        counter.cell("signed").count += 2
        counter.labels("signed").inc()
        assert registry.get_sample_value("v_total", {"to": "signed"}) == 3


class TestCells:
    def test_a_series_has_one_cell_however_often_asked(self) -> None:
        registry = CollectorRegistry()
        counter = CellCounter("u", "d", ["to"], registry=registry)
        histogram = CellHistogram("u_seconds", "d", ["to"], buckets=BUCKETS, registry=registry)
        assert counter.cell("signed") is counter.cell("signed")
        assert counter.cell("signed") is not counter.cell("mined")
        assert histogram.cell("signed") is histogram.cell("signed")

    def test_a_cell_without_the_labels_of_its_metric_is_refused_when_made(self) -> None:
        registry = CollectorRegistry()
        counter = CellCounter("t", "d", ["to"], registry=registry)
        histogram = CellHistogram("t_seconds", "d", ["to"], buckets=BUCKETS, registry=registry)
        with pytest.raises(ValueError, match="label value"):
            counter.cell()
        with pytest.raises(ValueError, match="label value"):
            histogram.cell("a", "b")
        assert registry.get_sample_value("t_total", {"to": "a"}) is None  # scrapes still work
