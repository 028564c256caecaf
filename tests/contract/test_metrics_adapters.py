"""What each metrics source does beyond the shared contract: queries sent, failures, discovery."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

from rightsizer.adapters.metrics import dcgm as dcgm_module
from rightsizer.adapters.metrics.base import AUTO_SIGNAL, GR_ENGINE_ACTIVE, Sample
from rightsizer.adapters.metrics.dcgm import DcgmSource
from rightsizer.adapters.metrics.fake import FakeGpuMetricsSource
from rightsizer.adapters.metrics.prometheus import PrometheusSource
from rightsizer.adapters.metrics.series_shapes import LabelShape
from rightsizer.core.errors import InvalidMetricQuery, MetricsUnavailable
from tests.contract.test_metrics_contract import NOW, FleetWorld
from tests.support.serving import serving

pytestmark = pytest.mark.unit

TS = NOW.timestamp()


class CannedClient:
    """Answers every query with the next canned result (or raises it) and records the queries."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.queries: list[str] = []

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any:
        self.queries.append(query)
        answer = self.answers.pop(0) if self.answers else []
        if isinstance(answer, BaseException):
            raise answer
        return answer


# -- Prometheus: the queries ---------------------------------------------------------------------


NAMES = (
    '__name__=~"^(?:DCGM_FI_DEV_FB_USED|DCGM_FI_DEV_GPU_UTIL|DCGM_FI_DEV_POWER_USAGE|dcgm_fb_used|'
    'dcgm_fi_dev_fb_used|dcgm_fi_dev_gpu_util|dcgm_fi_dev_power_usage|dcgm_gpu_utilization|dcgm_power_usage)$"'
)


def test_fleet_query_under_auto_is_one_query_that_lets_each_series_show_its_shape() -> None:
    client = CannedClient()
    PrometheusSource(client, series_selector='job="dcgm-exporter"').fleet_samples(window_seconds=300)
    assert client.queries == ["{" + NAMES + ',job="dcgm-exporter"}[300s]']


@pytest.mark.parametrize(
    ("shape", "attributed"),
    [
        ("new", 'namespace!="",pod!=""'),
        ("old", 'pod_namespace!="",pod_name!=""'),
        ("exported", 'exported_namespace!="",exported_pod!=""'),
        ("namespace=k8s_ns,pod=k8s_pod", 'k8s_ns!="",k8s_pod!=""'),
    ],
)
def test_fleet_query_of_a_fixed_shape_asks_for_every_series_its_labels_attribute(
    shape: str, attributed: str
) -> None:
    client = CannedClient()
    source = PrometheusSource(client, pod_labels=LabelShape.parse(shape), series_selector='job="dcgm"')
    source.fleet_samples(window_seconds=300)
    assert client.queries == ["{" + NAMES + ',job="dcgm",' + attributed + "}[300s]"]


def test_a_quoted_value_in_the_series_selector_stays_one_string() -> None:
    client = CannedClient()
    PrometheusSource(client, series_selector='cluster="x\\"} or vector(1) #"').fleet_samples()
    assert client.queries == ["{" + NAMES + ',cluster="x\\"} or vector(1) #"}[120s]']


@pytest.mark.parametrize(
    "selector", ['job="a"} or vector(1)', 'job="a" or vector(1)', '__name__="up"', "job=a"]
)
def test_a_series_selector_that_is_not_label_matchers_is_refused_before_any_query(selector: str) -> None:
    client = CannedClient()
    with pytest.raises(InvalidMetricQuery):
        PrometheusSource(client, series_selector=selector)
    assert client.queries == []


def test_unknown_signal_name_is_refused_before_any_query() -> None:
    client = CannedClient()
    with pytest.raises(InvalidMetricQuery):
        PrometheusSource(client).fleet_samples(signal="DCGM_FI_DEV_GPU_UTIL} or vector(1)")
    assert client.queries == []


def test_nan_values_pass_through_so_the_caller_holds() -> None:
    series = {
        "metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "namespace": "ml", "pod": "p", "UUID": "GPU-1"},
        "values": [[TS - 15, "40"], [TS, "NaN"]],
    }
    sample = PrometheusSource(CannedClient([series])).fleet_samples()[("ml", "p")]
    assert math.isnan(sample.value)
    assert not sample.is_fresh(NOW, 60)


def test_one_gpu_scraped_by_two_jobs_counts_once() -> None:
    def series(job: str) -> dict[str, Any]:
        labels = {
            "__name__": "DCGM_FI_DEV_GPU_UTIL",
            "namespace": "ml",
            "pod": "p",
            "UUID": "GPU-1",
            "job": job,
        }
        return {"metric": labels, "values": [[TS, "50"]]}

    sample = PrometheusSource(CannedClient([series("a"), series("b")])).fleet_samples()[("ml", "p")]
    assert sample.gpus == 1 and sample.value == 50


def test_custom_template_is_rendered_escaped_and_attributed_per_pod() -> None:
    answer = [
        {"metric": {"namespace": "ml", "pod": "web-1"}, "value": [TS, "61"]},
        {"metric": {"namespace": "ml", "pod": "not-asked"}, "value": [TS, "99"]},
        {"metric": {}, "value": [TS, "5"]},
    ]
    client = CannedClient(answer)
    template = 'avg by (namespace, pod) (my_util{namespace="{{namespace}}", pod=~"{{pods}}"})'
    samples = PrometheusSource(client).custom_pod_samples(template, "ml", ["web-1"])
    assert client.queries == ['avg by (namespace, pod) (my_util{namespace="ml", pod=~"^(?:web-1)$"})']
    assert samples == {"web-1": Sample(value=61, timestamp=NOW, gpus=1, since=NOW, points=1, per_gpu=(61,))}


def test_custom_template_with_unknown_placeholder_never_reaches_prometheus() -> None:
    client = CannedClient()
    with pytest.raises(InvalidMetricQuery, match="unknown placeholder"):
        PrometheusSource(client).custom_pod_samples('m{ns="{{ns}}"}', "ml", ["a"])
    assert client.queries == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ([{"metric": {}, "value": [TS, "3.5"]}], 3.5),
        ([], None),
        ([TS, "7"], 7.0),  # resultType scalar
    ],
)
def test_scalar_reads_one_number(answer: Any, expected: float | None) -> None:
    assert PrometheusSource(CannedClient(answer)).scalar("sum(rate(requests_total[1m]))") == expected


def test_scalar_refuses_an_ambiguous_answer() -> None:
    answer = [{"metric": {"a": "1"}, "value": [TS, "1"]}, {"metric": {"a": "2"}, "value": [TS, "2"]}]
    with pytest.raises(MetricsUnavailable, match="2 series") as caught:
        PrometheusSource(CannedClient(answer)).scalar("rate(requests_total[1m])")
    assert "sum(" in caught.value.remedy


def test_scalar_fills_the_namespace_placeholder() -> None:
    client = CannedClient([])
    PrometheusSource(client).scalar('sum(rate(http_requests_total{namespace="{{namespace}}"}[1m]))', "ml")
    assert client.queries == ['sum(rate(http_requests_total{namespace="ml"}[1m]))']


def test_rejected_query_says_to_fix_the_query() -> None:
    client = CannedClient(PrometheusApiClientException("HTTP Status Code 400 (b'bad_data: parse error')"))
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusSource(client).scalar("sum(")
    assert caught.value.source == "Prometheus"
    assert "fix the PromQL" in caught.value.remedy


def test_server_error_says_to_check_prometheus() -> None:
    client = CannedClient(PrometheusApiClientException("HTTP Status Code 503 (b'unavailable')"))
    with pytest.raises(MetricsUnavailable, match="503") as caught:
        PrometheusSource(client).fleet_samples()
    assert "Prometheus" in caught.value.remedy


def test_unexpected_answer_shape_is_unavailable_not_a_crash() -> None:
    with pytest.raises(MetricsUnavailable, match="range vector"):
        PrometheusSource(CannedClient([{"metric": {}, "value": [TS, "1"]}])).fleet_samples()
    with pytest.raises(MetricsUnavailable, match="unreadable sample"):
        PrometheusSource(
            CannedClient([{"metric": {"namespace": "a", "pod": "b"}, "values": [["x"]]}])
        ).fleet_samples()


# -- Prometheus: real HTTP failures ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_prometheus_down_is_metrics_unavailable() -> None:
    source = PrometheusSource.connect(f"http://127.0.0.1:{free_port()}", retries=0, timeout_seconds=2)
    with pytest.raises(MetricsUnavailable, match="cannot reach") as caught:
        source.fleet_samples()
    assert "Prometheus URL" in caught.value.remedy


def test_prometheus_that_never_answers_times_out() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        source = PrometheusSource.connect(url, retries=0, timeout_seconds=0.3)
        with pytest.raises(MetricsUnavailable, match=r"did not answer within 0.3s"):
            source.fleet_samples()


@pytest.fixture
def html_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>login</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server) as url:
        yield url


def test_something_that_is_not_prometheus_is_unavailable(html_server: str) -> None:
    source = PrometheusSource.connect(html_server, retries=0, timeout_seconds=2)
    with pytest.raises(MetricsUnavailable, match="unreadable answer"):
        source.fleet_samples()


@pytest.fixture
def prometheus_api() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A minimal Prometheus HTTP API answering every query with an empty matrix; records headers."""
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers))
            body = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server) as url:
        yield url, seen


def test_bearer_token_file_is_read_on_every_query_so_rotation_needs_no_restart(
    prometheus_api: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = prometheus_api
    token = tmp_path / "token"
    token.write_text("first\n")
    source = PrometheusSource.connect(
        url,
        bearer_token_file=str(token),
        headers={"X-Scope-OrgID": "gpu"},
        retries=0,
        pod_labels=LabelShape.parse("old"),
    )
    assert source.fleet_samples() == {}
    token.write_text("second")
    source.fleet_samples()
    assert [h["Authorization"] for h in seen] == ["Bearer first", "Bearer second"]
    assert seen[0]["X-Scope-OrgID"] == "gpu"
    token.unlink()
    with pytest.raises(MetricsUnavailable, match="bearer token") as caught:
        source.fleet_samples()
    assert "token file" in caught.value.remedy


def test_dcgm_http_fetch_reads_a_real_endpoint(html_server: str) -> None:
    assert dcgm_module.http_fetch()(html_server + "/metrics", 2) == "<html>login</html>"
    with pytest.raises(ValueError, match="larger than"):
        dcgm_module.http_fetch(max_bytes=4)(html_server, 2)


# -- DCGM ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def test_one_failing_endpoint_leaves_the_others_usable_and_is_reported() -> None:
    world = FleetWorld()

    def fetch(url: str, timeout: float) -> str:
        if "down" in url:
            raise requests.ConnectionError("connection refused")
        return world.body(300, "new")

    source = DcgmSource(["http://up/metrics", "http://down/metrics"], fetch=fetch, clock=Clock())
    assert source.fleet_samples()[("ml", "web-1")].value == 73
    assert list(source.last_errors) == ["http://down/metrics"]
    assert "connection refused" in source.last_errors["http://down/metrics"]


def test_every_endpoint_failing_is_metrics_unavailable() -> None:
    def fetch(url: str, timeout: float) -> str:
        return "<html>502</html>"

    with pytest.raises(MetricsUnavailable, match="all 1 exporter endpoint") as caught:
        DcgmSource(["http://x/metrics"], fetch=fetch, clock=Clock()).fleet_samples()
    assert "line 1" in caught.value.problem


def test_no_endpoints_found_is_metrics_unavailable() -> None:
    with pytest.raises(MetricsUnavailable, match="no dcgm-exporter endpoints"):
        DcgmSource(lambda: [], fetch=lambda url, timeout: "", clock=Clock()).fleet_samples()


def test_series_cap_protects_against_label_explosions() -> None:
    source = DcgmSource(
        ["http://x/metrics"],
        fetch=lambda url, timeout: FleetWorld().body(0, "new"),
        clock=Clock(),
        max_series_per_scrape=10,
    )
    with pytest.raises(MetricsUnavailable, match="more than 10 series"):
        source.fleet_samples()


def test_scrapes_are_shared_within_the_cache_period() -> None:
    clock = Clock()
    calls: list[str] = []

    def fetch(url: str, timeout: float) -> str:
        calls.append(url)
        return FleetWorld().body(0, "new")

    source = DcgmSource(["http://x/metrics"], fetch=fetch, clock=clock, cache_seconds=5)
    source.fleet_samples()
    source.fleet_samples(signal=GR_ENGINE_ACTIVE)
    clock.now += timedelta(seconds=4)
    source.fleet_samples(signal=AUTO_SIGNAL, window_seconds=60)
    assert len(calls) == 1
    clock.now += timedelta(seconds=2)
    source.fleet_samples()
    assert len(calls) == 2


def test_per_node_and_whole_cluster_urls_of_one_gpu_count_it_once() -> None:
    body = FleetWorld().body(0, "new")
    source = DcgmSource(
        ["http://x/metrics", "http://x/nodes/a100-0/metrics"], fetch=lambda u, t: body, clock=Clock()
    )
    assert source.fleet_samples()[("ml", "web-1")].gpus == 1


def test_exporter_timestamps_are_used_when_present() -> None:
    at = NOW - timedelta(seconds=30)
    labels = 'gpu="0",UUID="GPU-1",namespace="ml",pod="p"'
    body = f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 42 {int(at.timestamp() * 1000)}\n"
    sample = DcgmSource(["u"], fetch=lambda u, t: body, clock=Clock()).fleet_samples()[("ml", "p")]
    assert sample.timestamp == at and sample.value == 42


def test_history_older_than_its_span_is_dropped() -> None:
    clock = Clock()
    body = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1",namespace="ml",pod="p"} 42\n'
    source = DcgmSource(["u"], fetch=lambda u, t: body, clock=clock, history_seconds=60, cache_seconds=0)
    source.fleet_samples()
    clock.now += timedelta(seconds=30)
    source.fleet_samples()
    clock.now += timedelta(seconds=45)
    assert source.fleet_samples(window_seconds=3600)[("ml", "p")].points == 2  # the first point is gone


def test_dcgm_cannot_answer_promql() -> None:
    source = DcgmSource(["u"], fetch=lambda u, t: "", clock=Clock())
    with pytest.raises(MetricsUnavailable, match="cannot evaluate PromQL") as caught:
        source.scalar("sum(x)")
    assert "Prometheus" in caught.value.remedy
    with pytest.raises(MetricsUnavailable):
        source.custom_pod_samples('m{pod=~"{{pods}}"}', "ml", ["a"])


def test_endpoint_slice_lister_lists_ready_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []

    def endpoint(ip: str, ready: bool | None) -> SimpleNamespace:
        return SimpleNamespace(addresses=[ip], conditions=SimpleNamespace(ready=ready))

    class Discovery:
        def __init__(self, api: object) -> None:
            pass

        def list_namespaced_endpoint_slice(self, namespace: str, label_selector: str) -> SimpleNamespace:
            calls.append((namespace, label_selector))
            return SimpleNamespace(
                items=[
                    SimpleNamespace(
                        ports=[SimpleNamespace(name="metrics", port=9400)],
                        endpoints=[
                            endpoint("10.0.0.2", True),
                            endpoint("10.0.0.3", False),
                            endpoint("fd00::1", None),
                        ],
                    )
                ]
            )

    from kubernetes import client

    monkeypatch.setattr(client, "DiscoveryV1Api", Discovery)
    urls = dcgm_module.endpoint_slice_lister(object(), "gpu-operator", "dcgm-exporter", port="metrics")()
    assert urls == ["http://10.0.0.2:9400/metrics", "http://[fd00::1]:9400/metrics"]
    assert calls == [("gpu-operator", "kubernetes.io/service-name=dcgm-exporter")]


def test_fake_simulates_an_outage_and_recovery() -> None:
    fake = FakeGpuMetricsSource(clock=lambda: NOW)
    fake.set_util("ml", ["a", "b"], 90)
    fake.fail(MetricsUnavailable("fake", "stopped", "start it"))
    with pytest.raises(MetricsUnavailable):
        fake.fleet_samples()
    fake.fail(None)
    assert fake.fleet_samples()[("ml", "b")].value == 90


def test_fake_answers_custom_queries_and_scalars_it_was_given() -> None:
    fake = FakeGpuMetricsSource(clock=lambda: NOW)
    template = 'avg by (pod) (x{namespace="{{namespace}}", pod=~"{{pods}}"})'
    fake.set_custom(template, "ml", {"a": 40, "z": 1})
    fake.set_scalar("sum(rate(req[1m]))", 2.5)
    assert fake.custom_pod_samples(template, "ml", ["a"]) == {"a": Sample(value=40, timestamp=NOW, since=NOW)}
    assert fake.scalar("sum(rate(req[1m]))") == 2.5
    assert fake.scalar("unknown") is None
    with pytest.raises(InvalidMetricQuery):
        fake.custom_pod_samples('x{ns="{{ns}}"}', "ml", ["a"])


def test_fake_forgets_a_pod() -> None:
    fake = FakeGpuMetricsSource(clock=lambda: NOW)
    fake.set_util("ml", "a", 90, memory_used_mib=100, power_watts=50)
    fake.forget("ml", "a")
    assert fake.fleet_samples() == {}
