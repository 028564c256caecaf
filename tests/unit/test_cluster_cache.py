"""The in-memory view of the cluster the workload loop reads: one list and one watch per kind, entries
re-keyed on every change, a fresh list when the watch is too old, and a missing KEDA is just empty."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from rightsizer.adapters import cluster_cache as cc
from rightsizer.adapters.kube import TargetRef

pytestmark = pytest.mark.unit


def pod(
    name: str, ns: str = "ml", uid: str | None = None, rv: str = "1", ready: bool = True
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": uid or f"uid-{ns}-{name}", "resourceVersion": rv,
                     "labels": {"app": name.split("-", maxsplit=1)[0]}},
        "spec": {"nodeName": "node-1", "containers": [{"resources": {"requests": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]},
    }  # fmt: skip


def pods_cache() -> cc.KindCache:
    return cc.KindCache(cc.PODS, None, cc.WATCHED[cc.PODS])


def test_a_list_fills_the_index_by_namespace() -> None:
    cache = pods_cache()
    cache.replace([pod("web-1"), pod("web-2"), pod("db-1", ns="data")], "100")
    assert sorted(p.name for p in cache.get("ml")) == ["web-1", "web-2"]
    assert [p.name for p in cache.get("data")] == ["db-1"]
    assert cache.resource_version == "100"
    assert cache.synced.is_set()


@pytest.mark.parametrize(
    ("event", "expected_ml"),
    [
        ({"type": "ADDED", "object": pod("web-3", rv="101")}, ["web-1", "web-2", "web-3"]),
        ({"type": "DELETED", "object": pod("web-2", rv="101")}, ["web-1"]),
        ({"type": "MODIFIED", "object": pod("web-1", ns="other", uid="uid-ml-web-1", rv="101")}, ["web-2"]),
        ({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "101"}}}, ["web-1", "web-2"]),
    ],
)
def test_watch_events_keep_the_index_current(event: dict[str, Any], expected_ml: list[str]) -> None:
    cache = pods_cache()
    cache.replace([pod("web-1"), pod("web-2")], "100")
    cache.apply(event)
    assert sorted(p.name for p in cache.get("ml")) == expected_ml
    assert cache.resource_version == "101"


def test_a_modified_pod_replaces_its_entry() -> None:
    cache = pods_cache()
    cache.replace([pod("web-1", ready=False)], "100")
    cache.apply({"type": "MODIFIED", "object": pod("web-1", rv="101", ready=True)})
    (only,) = cache.get("ml")
    assert only.ready


def test_a_finished_pod_leaves_the_index() -> None:
    cache = pods_cache()
    cache.replace([pod("job-1")], "100")
    done = pod("job-1", rv="101")
    done["status"]["phase"] = "Succeeded"
    cache.apply({"type": "MODIFIED", "object": done})
    assert cache.get("ml") == []


def test_an_expired_watch_asks_for_a_fresh_list() -> None:
    cache = pods_cache()
    with pytest.raises(cc.Gone):
        cache.apply({"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}})


class Listed(dict[str, Any]):
    """A listed object that can be weakly referenced (a plain dict cannot)."""


class FakeTransport:
    """Serves lists from `objects` and the scripted watch streams, then blocks until stopped."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], watches: dict[str, list[Any]]) -> None:
        self.objects = objects
        self.watches = watches
        self.lists: list[str] = []
        self.watched_from: list[tuple[str, str]] = []
        self.release = threading.Event()
        self.served: dict[str, list[Listed]] = {}  # what the last list of each path handed out

    def list(self, path: str) -> Iterator[cc.Page]:
        self.lists.append(path)
        if path not in self.objects:
            raise ApiException(status=404, reason="not installed")
        # One object per page, each a fresh copy the test can follow with a weak reference.
        served = self.served[path] = [Listed(item) for item in self.objects[path]]
        for item in served or [None]:
            yield ([item] if item is not None else []), "100"

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        self.watched_from.append((path, resource_version))
        script = self.watches.get(path) or []
        if script:
            step = script.pop(0)
            if isinstance(step, Exception):
                raise step
            yield from step
            return
        self.release.wait(5)  # an idle watch
        return


EVERYTHING = {
    "/api/v1/pods": [pod("web-1")],
    "/api/v1/nodes": [{"metadata": {"name": "node-1", "uid": "n1", "labels": {"pool": "a100"}}}],
    "/apis/autoscaling/v2/horizontalpodautoscalers": [
        {"metadata": {"name": "web", "namespace": "ml", "uid": "h1"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}}
    ],
    "/apis/autoscaling.internal.knative.dev/v1alpha1/podautoscalers": [
        {"metadata": {"name": "chat-00001", "namespace": "ml", "uid": "k1"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "chat-00001-deployment"}}}
    ],
    "/apis/rightsizer.io/v1alpha1/gpuworkloads": [],
    "/apis/rightsizer.io/v1alpha1/gpunodepools": [],
}  # fmt: skip


def test_the_cache_lists_every_kind_once_and_serves_the_view() -> None:
    transport = FakeTransport(EVERYTHING, {})
    cache = cc.ClusterCache(transport, absent_recheck_seconds=60)
    cache.start()
    try:
        assert cache.wait_synced(timeout=5)
        view = cache.view()
        assert [p.name for p in view.pods("ml", "app=web")] == ["web-1"]
        assert view.node_labels(["node-1"]) == {"node-1": {"pool": "a100"}}
        assert view.conflicting_autoscalers("ml", TargetRef("apps/v1", "Deployment", "web")) == [
            "HorizontalPodAutoscaler/web"
        ]
        knative = TargetRef("apps/v1", "Deployment", "chat-00001-deployment")
        assert view.conflicting_autoscalers("ml", knative) == ["PodAutoscaler/chat-00001"]
        assert view.pods("other", "") == []
        # KEDA is not installed: ScaledObjects are simply none, and the cache is still synced.
        assert "/apis/keda.sh/v1alpha1/scaledobjects" in transport.lists
    finally:
        cache.stop()
        transport.release.set()


def test_a_list_of_many_pages_is_indexed_whole_with_the_first_pages_version() -> None:
    cache = cc.KindCache(cc.PODS, None, cc.WATCHED[cc.PODS])
    cache.replace_pages([([pod("web-1")], "100"), ([pod("web-2"), pod("db-1", ns="data")], "100")])
    assert sorted(p.name for p in cache.get("ml")) == ["web-1", "web-2"]
    assert cache.resource_version == "100" and cache.synced.is_set()


def test_listed_objects_are_not_kept_while_the_watch_runs() -> None:
    # A list of every pod is tens of MiB at fleet scale: only the index entries may outlive it.
    many = {**EVERYTHING, "/api/v1/pods": [pod(f"web-{i}") for i in range(20)]}
    transport = FakeTransport(many, {})
    cache = cc.ClusterCache(transport, absent_recheck_seconds=60)
    cache.start()
    try:
        assert cache.wait_synced(timeout=5)
        served = [weakref.ref(item) for item in transport.served.pop("/api/v1/pods")]
        assert len(cache.view().pods("ml", "app=web")) == 20
        gc.collect()
        assert [ref for ref in served if ref() is not None] == []
    finally:
        cache.stop()
        transport.release.set()


def test_a_gone_watch_lists_again_and_resumes_from_the_new_version() -> None:
    gone = {"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}}
    transport = FakeTransport(
        {"/api/v1/pods": [pod("web-1")]},
        # The first watch ends normally (server timeout) after one event, the second is too old.
        {"/api/v1/pods": [[{"type": "ADDED", "object": pod("web-2", rv="150")}], [gone]]},
    )
    cache = cc.ClusterCache(transport, retry_seconds=0.01)
    kind = cache.caches[cc.PODS][0]
    worker = threading.Thread(target=cache._keep, args=(kind,), daemon=True)
    worker.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if transport.lists.count("/api/v1/pods") >= 2:
                break
            deadline.wait(0.05)
        assert transport.lists.count("/api/v1/pods") >= 2  # listed again after 410
        assert transport.watched_from[:2] == [("/api/v1/pods", "100"), ("/api/v1/pods", "150")]
    finally:
        cache.stop()
        transport.release.set()
        worker.join(timeout=5)


def test_a_broken_watch_is_retried_with_a_fresh_list() -> None:
    transport = FakeTransport(
        {"/api/v1/pods": [pod("web-1")]},
        {"/api/v1/pods": [ConnectionResetError("reset by peer")]},
    )
    cache = cc.ClusterCache(transport, retry_seconds=0.01)
    kind = cache.caches[cc.PODS][0]
    worker = threading.Thread(target=cache._keep, args=(kind,), daemon=True)
    worker.start()
    try:
        for _ in range(100):
            if transport.lists.count("/api/v1/pods") >= 2:
                break
            threading.Event().wait(0.05)
        assert transport.lists.count("/api/v1/pods") >= 2
        assert [p.name for p in kind.get("ml")] == ["web-1"]  # the last known state kept serving
    finally:
        cache.stop()
        transport.release.set()
        worker.join(timeout=5)


def test_restricted_to_namespaces_it_watches_each_one_and_cluster_kinds_whole() -> None:
    cache = cc.ClusterCache(FakeTransport({}, {}), namespaces=["ml", "data"])
    assert [c.path for c in cache.caches[cc.PODS]] == [
        "/api/v1/namespaces/ml/pods",
        "/api/v1/namespaces/data/pods",
    ]
    assert [c.path for c in cache.caches[cc.NODES]] == ["/api/v1/nodes"]
    assert [c.path for c in cache.caches[cc.GPU_NODE_POOLS]] == ["/apis/rightsizer.io/v1alpha1/gpunodepools"]


def test_lookup_merges_namespaces_and_misses_raise_key_error() -> None:
    ml, data = (cc.KindCache(cc.PODS, ns, cc.WATCHED[cc.PODS]) for ns in ("ml", "data"))
    ml.replace([pod("web-1")], "1")
    data.replace([pod("db-1", ns="data")], "1")
    lookup = cc.Lookup([ml, data])
    assert sorted(lookup) == ["data", "ml"]
    assert [p.name for p in lookup["data"]] == ["db-1"]
    assert lookup.get("nowhere", ()) == ()


class Ticks:
    """An injected monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_broken_watch_makes_the_view_stale_until_it_has_listed_again() -> None:
    transport = FakeTransport({"/api/v1/pods": [pod("web-1")]}, {})
    cache = cc.ClusterCache(transport, clock=Ticks())
    kind = cache.caches[cc.PODS][0]
    kind.replace([pod("web-1")], "100")
    assert cache.stale() is None  # never failed, never listed: wait_synced guards that case
    cache._failed(kind, ConnectionResetError("reset by peer"), failing=False)
    stale = cache.stale()
    assert stale is not None and "watch of /api/v1/pods broken" in stale and "reset by peer" in stale
    transport.release.set()  # the next list succeeds; its watch ends at once
    cache._stop.set()
    cache.sync_once(kind)
    assert cache.stale() is None


def test_a_view_nobody_refreshed_for_too_long_is_stale() -> None:
    ticks = Ticks()
    transport = FakeTransport({"/api/v1/pods": [pod("web-1")]}, {"/api/v1/pods": [[]]})
    cache = cc.ClusterCache(transport, watch_seconds=300, clock=ticks)
    kind = cache.caches[cc.PODS][0]
    cache._stop.set()  # one list and one watch, then return
    cache.sync_once(kind)
    ticks.now += 600
    assert cache.stale() is None
    ticks.now += 61  # longer than two watch timeouts and a minute: the watch must have hung
    stale = cache.stale()
    assert stale is not None and "/api/v1/pods not refreshed for 661s" in stale
