"""`rightsizer backtest --workload NS/NAME --since D` as users run it: what is asked of Prometheus,
what is printed, and how it fails (exit 2, naming the problem)."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_api_client.exceptions import PrometheusApiClientException

from rightsizer.adapters.metrics.history import MAX_STEPS_PER_QUERY, PrometheusHistory, Window
from rightsizer.adapters.metrics.series_shapes import LabelShape
from rightsizer.cli import backtest as backtest_cli
from rightsizer.cli import backtest_history
from rightsizer.cli.main import main
from rightsizer.core.errors import MetricsUnavailable

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
SPEC = {
    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"},
    "workloadType": "Inference",
    "targetUtilization": 60,
    "minReplicas": 1,
    "maxReplicas": 4,
    "metric": {"window": "10s"},
}
POD_A, POD_B = "chat-7d9f8b6c5d-x2x4z", "chat-7d9f8b6c5d-b5k2m"


class StubPrometheus:
    """Answers range queries from canned series; records what was asked."""

    def __init__(
        self,
        gpu: list[dict[str, Any]],
        replicas: list[dict[str, Any]] | None = None,
        signals: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        self.gpu, self.replicas, self.signals = gpu, replicas or [], signals or {}
        self.asked: list[tuple[str, datetime, datetime, str, dict[str, Any]]] = []

    def custom_query_range(
        self, query: str, start_time: datetime, end_time: datetime, step: str, params: Any = None
    ) -> Any:
        self.asked.append((query, start_time, end_time, step, dict(params or {})))
        start, end = start_time.timestamp(), end_time.timestamp()
        signal = next((found for name, found in self.signals.items() if name in query), None)
        if signal is not None:  # a request signal's own query: answered whole
            series = signal
        else:
            candidates = self.replicas if query.startswith('{__name__="kube_') else self.gpu
            series = [s for s in candidates if _selected(query, s["metric"])]
        return [{**s, "values": [v for v in s["values"] if start <= v[0] <= end]} for s in series]


def _selected(query: str, labels: dict[str, str]) -> bool:
    # Enough PromQL for these tests: the namespace/pod label pair a shape query names must be present.
    for ns_label, pod_label in (("exported_namespace", "exported_pod"), ("pod_namespace", "pod_name")):
        if f'{ns_label}="' in query:
            return ns_label in labels and pod_label in labels
    if "kube_" in query:
        return True
    return "namespace" in labels and "pod" in labels and 'namespace="' in query


def series(name: str, values: list[tuple[float, str]], /, **labels: str) -> dict[str, Any]:
    metric = {"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": "0", "UUID": f"GPU-{name}", **labels}
    metric.setdefault("namespace", "ml")
    metric.setdefault("pod", name)
    return {"metric": metric, "values": [[t, v] for t, v in values]}


def steady(value: str, minutes: int = 3) -> list[tuple[float, str]]:
    start = NOW.timestamp() - minutes * 60
    return [(start + i * 30, value) for i in range(minutes * 2 + 1)]


# -- the adapter ----------------------------------------------------------------------------------


def test_one_query_per_label_shape_with_the_operators_lookback_as_the_maximum_age() -> None:
    stub = StubPrometheus([series(POD_A, steady("90"))])
    history = PrometheusHistory(stub, series_selector='job="dcgm"')
    window = Window.ending(NOW, timedelta(minutes=3), 30)
    gpus = history.gpu_series("ml", "^(?:chat-.+)$", "DCGM_FI_DEV_GPU_UTIL", window, timedelta(seconds=60))
    assert [(g.pod, len(g.signal)) for g in gpus] == [(POD_A, 7)]
    assert len(stub.asked) == 3  # exported_*, old and new label names
    queries = [q for q, *_ in stub.asked]
    assert all('job="dcgm"' in q for q in queries)
    assert any('exported_namespace="ml",exported_pod=~"^(?:chat-.+)$"' in q for q in queries)
    assert any('pod_namespace="ml",pod_name=~"^(?:chat-.+)$"' in q for q in queries)
    _, start, end, step, params = stub.asked[0]
    assert (start, end, step, params) == (NOW - timedelta(minutes=3), NOW, "30s", {"lookback_delta": "60s"})


def test_a_serviceMonitor_shape_names_the_workload_in_exported_labels() -> None:
    exporter = {"namespace": "monitoring", "pod": "dcgm-exporter-abcde", "job": "dcgm"}
    stub = StubPrometheus(
        [series(POD_A, steady("40"), exported_namespace="ml", exported_pod=POD_A, **exporter)]
    )
    window = Window.ending(NOW, timedelta(minutes=3), 30)
    gpus = PrometheusHistory(stub).gpu_series(
        "ml", "^chat-.+$", "DCGM_FI_DEV_GPU_UTIL", window, timedelta(60)
    )
    assert [(g.namespace, g.pod) for g in gpus] == [("ml", POD_A)]


def test_long_ranges_are_asked_in_chunks_on_one_grid() -> None:
    window = Window.ending(NOW, timedelta(seconds=30 * (MAX_STEPS_PER_QUERY + 5)), 30)
    chunks = window.chunks()
    assert len(chunks) == 2
    assert chunks[1].start == chunks[0].end + timedelta(seconds=30)
    assert sum(len(c.times()) for c in chunks) == len(window.times())


def test_kube_state_metrics_counts_are_read_in_the_workloads_namespace() -> None:
    other = {"metric": {"namespace": "other", "deployment": "chat"}, "values": [[NOW.timestamp(), "9"]]}
    mine = {"metric": {"namespace": "ml", "deployment": "chat"}, "values": [[NOW.timestamp(), "3"]]}
    stub = StubPrometheus([], [other, mine])
    window = Window.ending(NOW, timedelta(minutes=1), 30)
    counts = PrometheusHistory(stub).replica_counts(
        "kube_deployment_spec_replicas", "deployment", "ml", "chat", window=window, max_age=timedelta(60)
    )
    assert counts == {NOW: 3}


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (requests.ConnectionError("refused"), "cannot reach http://prom:9090"),
        (PrometheusApiClientException("HTTP Status Code 400 (b'exceeded maximum resolution')"), "--step"),
        (PrometheusApiClientException("HTTP Status Code 503 (b'')"), "health"),
        (
            requests.ReadTimeout("slow"),
            r"did not answer within 10.0s.*RIGHTSIZER_PROMETHEUS__TIMEOUT_SECONDS",
        ),
        (requests.JSONDecodeError("no", "<html>", 0), "unreadable answer"),
    ],
)
def test_prometheus_failures_are_metrics_unavailable(error: Exception, says: str) -> None:
    class Failing:
        def custom_query_range(self, *args: Any, **kwargs: Any) -> Any:
            raise error

    history = PrometheusHistory(Failing(), url="http://prom:9090", pod_labels=LabelShape.parse("new"))
    with pytest.raises(MetricsUnavailable, match=says):
        history.gpu_series("ml", "^a$", "DCGM_FI_DEV_GPU_UTIL", Window(NOW, NOW, 30), timedelta(60))


def test_an_unreadable_token_file_is_said_with_the_setting_that_names_it(tmp_path: Path) -> None:
    history = PrometheusHistory.connect("http://127.0.0.1:9", bearer_token_file=str(tmp_path / "gone"))
    with pytest.raises(MetricsUnavailable, match=r"bearer token.*RIGHTSIZER_PROMETHEUS__BEARER_TOKEN_FILE"):
        history.gpu_series("ml", "^a$", "DCGM_FI_DEV_GPU_UTIL", Window(NOW, NOW, 30), timedelta(60))


# -- the command ----------------------------------------------------------------------------------


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster's part (the GPUWorkload, its target's pods now) answered without one."""
    monkeypatch.setattr(backtest_cli, "api_client", lambda kubeconfig=None: object())
    monkeypatch.setattr(backtest_history, "_stored_spec", lambda api, request: SPEC)
    monkeypatch.setattr(backtest_history, "_pods_now", lambda api, namespace, ref: [POD_A])


def answered_by(monkeypatch: pytest.MonkeyPatch, stub: StubPrometheus) -> None:
    real = PrometheusHistory.connect

    def connect(url: str, **options: Any) -> PrometheusHistory:
        real(url, **options)  # the real client is built (and refuses nothing) but not asked
        return PrometheusHistory(stub, url=url, pod_labels=options["pod_labels"])

    monkeypatch.setattr(PrometheusHistory, "connect", connect)
    monkeypatch.setattr(backtest_cli, "datetime", _FixedClock)


class _FixedClock(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> _FixedClock:
        return cls.fromtimestamp(NOW.timestamp(), tz)


def test_history_is_replayed_and_summed_up(
    no_cluster: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answered_by(monkeypatch, StubPrometheus([series(POD_A, steady("90")), series(POD_B, steady("90"))]))
    args = ["backtest", "--workload", "ml/chat", "--since", "3m", "--step", "30s"]
    assert main([*args, "--prometheus-url", "http://prom:9090"]) == 0
    out = capsys.readouterr().out
    assert "history: http://prom:9090" in out
    assert "pods: 2 with GPU series" in out and "Deployment pod names chat-<hash>-<suffix>" in out
    assert "replicas that ran: the pods with a GPU series at each step" in out
    assert "ScaleUp" in out and "ceil(2×90/60)=3" in out
    assert "minutes above target: 3.5 ran" in out


def test_json_says_where_the_history_came_from(
    no_cluster: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ksm = {"metric": {"namespace": "ml", "deployment": "chat"}, "values": [[t, "3"] for t, _ in steady("3")]}
    answered_by(monkeypatch, StubPrometheus([series(POD_A, steady("90"))], [ksm]))
    args = ["backtest", "--workload", "ml/chat", "--since", "3m", "--step", "30s", "--output", "json"]
    assert main([*args, "--prometheus-url", "http://prom:9090"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["history"]["replicasFrom"] == "kube_deployment_spec_replicas (kube-state-metrics)"
    assert document["history"]["pods"] == [POD_A]
    # Two of the three replicas have no GPU series: starting pods, 0% against a scale-up, as HPA's.
    first = document["decisions"][0]
    assert (first["action"], first["replicas"]) == ("NoChange", 3), first
    assert "spread over 2 starting pods it is 30%" in first["reason"]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--since", "7x"], "--since '7x': not a duration"),
        (["--since", "0s"], "must be longer than zero"),
        (["--since", "3m", "--step", "1.5s"], "whole seconds"),
        (["--since", "10s", "--step", "30s"], "shorter than one step"),
        (["--since", "7d", "--workload", "chat"], "--workload NAMESPACE/NAME"),
    ],
)
def test_bad_flags_exit_2_before_anything_is_asked(
    flags: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = [] if "--workload" in flags else ["--workload", "ml/chat"]
    assert main(["backtest", *workload, *flags, "--prometheus-url", "http://127.0.0.1:1"]) == 2
    assert says in capsys.readouterr().err


def test_an_unreachable_prometheus_exits_2_naming_it(
    no_cluster: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        code = main(["backtest", "--workload", "ml/chat", "--since", "7d", "--prometheus-url", url])
    assert code == 2
    assert f"cannot reach {url}" in capsys.readouterr().err


def test_no_series_for_the_workload_exits_2_saying_what_was_looked_for(
    no_cluster: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answered_by(monkeypatch, StubPrometheus([]))
    assert main(["backtest", "--workload", "ml/chat", "--since", "1h", "--prometheus-url", "http://p"]) == 2
    err = capsys.readouterr().err
    assert "no GPU series of the workload's pods in Prometheus over the last 1h" in err
    assert "chat-<hash>-<suffix>" in err


WAITING = {
    "type": "Pods",
    "name": "waiting",
    "query": 'avg by (namespace, pod) (vllm_waiting{namespace="{{namespace}}", pod=~"{{pods}}"})',
    "target": {"type": "AverageValue", "averageValue": 5},
}
QUEUE = {
    "type": "External",
    "name": "queue",
    "query": 'sum(queue_seconds{namespace="{{namespace}}"})',
    "target": {"type": "Value", "value": 1},
}


def test_request_signals_are_read_from_history_and_decide_as_the_operator_would(
    no_cluster: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu_metric = {"type": "Gpu", "target": {"type": "Utilization", "averageUtilization": 60}}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "metrics": [gpu_metric, WAITING, QUEUE]}))
    waiting = [
        {"metric": {"namespace": "ml", "pod": pod}, "values": [[t, "12"] for t, _ in steady("12")]}
        for pod in (POD_A, POD_B)
    ]
    queue = [{"metric": {}, "values": [[t, "0.5"] for t, _ in steady("0")]}]
    stub = StubPrometheus(
        [series(POD_A, steady("60")), series(POD_B, steady("60"))],
        signals={"vllm_waiting": waiting, "queue_seconds": queue},
    )
    answered_by(monkeypatch, stub)
    args = ["backtest", "--workload", "ml/chat", "--since", "3m", "--step", "30s", "--spec", str(spec)]
    assert main([*args, "--prometheus-url", "http://prom:9090", "--output", "json"]) == 0
    first = json.loads(capsys.readouterr().out)["decisions"][0]
    # GPUs on target, 12 waiting per pod against 5: ceil(24/5) = 5, capped at maxReplicas 4.
    assert (first["action"], first["replicas"]) == ("ScaleUp", 4), first
    assert "largest of 3 signals: waiting" in first["reason"], first
    rendered = next(q for q, *_ in stub.asked if "vllm_waiting" in q)
    assert f'pod=~"^(?:{POD_B}|{POD_A})$"' in rendered  # {{pods}}: every pod of the window


def test_a_one_number_signal_answering_several_series_exits_2(
    no_cluster: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "metrics": [QUEUE]}))
    queue = [{"metric": {"q": str(i)}, "values": [[t, "1"] for t, _ in steady("1")]} for i in range(2)]
    answered_by(monkeypatch, StubPrometheus([series(POD_A, steady("60"))], signals={"queue_seconds": queue}))
    args = ["backtest", "--workload", "ml/chat", "--since", "3m", "--spec", str(spec)]
    assert main([*args, "--prometheus-url", "http://prom:9090"]) == 2
    assert "returned several series where one number was expected" in capsys.readouterr().err


def test_a_custom_utilisation_query_is_refused_rather_than_replayed_without_it(
    no_cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    custom = {"window": "1m", "query": 'avg by (pod) (util{namespace="{{namespace}}"})'}
    spec.write_text(json.dumps({**SPEC, "metric": custom}))
    args = ["backtest", "--workload", "ml/chat", "--since", "1h", "--spec", str(spec)]
    assert main([*args, "--prometheus-url", "http://127.0.0.1:1"]) == 2
    assert "spec.metric.query: a custom utilisation query is not read from history" in capsys.readouterr().err
