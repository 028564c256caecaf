"""What the workload loop reads about the cluster, kept in memory: one list and then one watch per kind
(pods, nodes, HPAs, KEDA ScaledObjects, Knative PodAutoscalers, GPUWorkloads, GPUNodePools), each on
a daemon thread.

Why not kopf indexes: until every index is filled, kopf parks each watched object's worker on one
condition and wakes all of them whenever any object is indexed. With 5,000 pods that is tens of
millions of wake-ups: the operator had not started its first pass after five minutes
(benchmarks/live.py). A list per kind, a watch from the list's resourceVersion, and a fresh list when
the watch expires (410 Gone) or breaks, keep the same facts current at a cost linear in the objects.
Only the index entries are kept (e.g. a pod's `PodInfo`), never whole objects.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from rightsizer.adapters import cluster_view as cv

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    group: str  # "" for the core API
    version: str
    plural: str
    namespaced: bool
    optional: bool = False  # a CRD that may not be installed (KEDA): missing means none

    def path(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}" if namespace else f"{prefix}/{self.plural}"


PODS = Kind("", "v1", "pods", namespaced=True)
NODES = Kind("", "v1", "nodes", namespaced=False)
HPAS = Kind("autoscaling", "v2", "horizontalpodautoscalers", namespaced=True)
SCALED_OBJECTS = Kind("keda.sh", "v1alpha1", "scaledobjects", namespaced=True, optional=True)
POD_AUTOSCALERS = Kind("autoscaling.internal.knative.dev", "v1alpha1", "podautoscalers", True, optional=True)
GPU_WORKLOADS = Kind("rightsizer.io", "v1alpha1", "gpuworkloads", namespaced=True)
GPU_NODE_POOLS = Kind("rightsizer.io", "v1alpha1", "gpunodepools", namespaced=False)

# Every kind the operator lists and watches for the workload loop (the chart grants list and watch).
WATCHED: Mapping[Kind, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = {
    PODS: cv.index_pod,
    NODES: cv.index_node,
    HPAS: cv.index_hpa,
    SCALED_OBJECTS: cv.index_scaled_object,
    POD_AUTOSCALERS: cv.index_pod_autoscaler,
    GPU_WORKLOADS: cv.index_workload,
    GPU_NODE_POOLS: cv.index_pool,
}


class Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


# One page of a list: its objects and the list's resourceVersion (the same on every page).
Page = tuple[list[dict[str, Any]], str]


class Transport(Protocol):
    def list(self, path: str) -> Iterator[Page]:
        """Every object at `path`, page by page, each page with the list's resourceVersion."""

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """Watch events from `resource_version` on, until the server ends the watch."""


class ApiTransport:
    """Lists (in pages) and watches through an ApiClient, as raw JSON: no model objects."""

    PAGE = 500

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api

    def _get(self, path: str, query: list[tuple[str, str]], read_timeout: float) -> Any:
        serialized = self._api.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )  # fmt: skip
        method, url, headers, body, _ = serialized
        response = self._api.call_api(method, url, headers, body, _request_timeout=(10, read_timeout))
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException(http_resp=response)
        return response

    def list(self, path: str) -> Iterator[Page]:
        # Pages are handed on as they arrive: only one page of whole objects is in memory at a time.
        token = ""
        version = ""
        while True:
            query = [("limit", str(self.PAGE))] + ([("continue", token)] if token else [])
            try:
                page = json.loads(self._get(path, query, 60).read())
            except ApiException as exc:
                if exc.status == 410:  # the continue token expired: start over
                    raise Gone(path) from exc
                raise
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion", ""))
            token = str(meta.get("continue") or "")
            yield page.get("items") or [], version
            if not token:
                return

    def watch(self, path: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        query = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_seconds)),
        ]
        try:
            response = self._get(path, query, timeout_seconds + 30)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(path) from exc
            raise
        try:
            for line in iter_resp_lines(response.response):
                if line:
                    yield json.loads(line)
        finally:
            response.response.release_conn()


class KindCache:
    """One kind in one namespace (or all): each object's index entries, and the entries by key."""

    def __init__(
        self, kind: Kind, namespace: str | None, index: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    ):
        self.kind = kind
        self.namespace = namespace
        self._index = index
        self._lock = threading.Lock()
        self._by_uid: dict[str, Mapping[str, Any]] = {}
        self._by_key: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = threading.Event()
        # When the API server last answered this list or watch (monotonic seconds), and why the watch
        # is broken right now (None while it runs): the cache knows how far it can be trusted.
        self.contact: float | None = None
        self.broken: str | None = None

    @property
    def path(self) -> str:
        return self.kind.path(self.namespace)

    def replace(self, items: Sequence[Mapping[str, Any]], resource_version: str) -> None:
        self.replace_pages([(items, resource_version)])

    def replace_pages(self, pages: Iterable[tuple[Sequence[Mapping[str, Any]], str]]) -> None:
        """A whole new list, indexed page by page; the entries swap in at once when it is complete."""
        by_uid: dict[str, Mapping[str, Any]] = {}
        resource_version = ""
        for items, version in pages:
            by_uid.update((_uid(item), self._index(item)) for item in items)
            resource_version = resource_version or version
        by_key: dict[str, dict[str, Any]] = {}
        for uid, entries in by_uid.items():
            for key, value in entries.items():
                by_key.setdefault(key, {})[uid] = value
        with self._lock:
            self._by_uid, self._by_key = by_uid, by_key
            self.resource_version = resource_version
        self.synced.set()

    def apply(self, event: Mapping[str, Any]) -> None:
        """One watch event. Raises Gone when the server says the resourceVersion is too old."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(self.path)
            raise ApiException(status=obj.get("code"), reason=f"{obj.get('reason')}: {obj.get('message')}")
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if kind == "BOOKMARK":
            self.resource_version = version or self.resource_version
            return
        uid = _uid(obj)
        entries = self._index(obj) if kind in ("ADDED", "MODIFIED") else {}
        with self._lock:
            for key in self._by_uid.pop(uid, {}):
                bucket = self._by_key.get(key, {})
                bucket.pop(uid, None)
                if not bucket:
                    self._by_key.pop(key, None)
            if entries:
                self._by_uid[uid] = entries
                for key, value in entries.items():
                    self._by_key.setdefault(key, {})[uid] = value
            self.resource_version = version or self.resource_version

    def get(self, key: str) -> list[Any]:
        with self._lock:
            return list(self._by_key.get(key, {}).values())

    def index_keys(self) -> list[str]:
        with self._lock:
            return list(self._by_key)


def _uid(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}")


class Lookup(Mapping[str, list[Any]]):
    """The entries of one kind by key, across its namespaces: what `IndexedView` reads."""

    def __init__(self, caches: Sequence[KindCache]) -> None:
        self._caches = caches

    def __getitem__(self, key: str) -> list[Any]:
        found = [value for cache in self._caches for value in cache.get(key)]
        if not found:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter({key for cache in self._caches for key in cache.index_keys()})

    def __len__(self) -> int:
        return len({key for cache in self._caches for key in cache.index_keys()})


class ClusterCache:
    """Every watched kind, cluster-wide or in the given namespaces (cluster-scoped kinds always whole)."""

    def __init__(
        self,
        transport: Transport,
        namespaces: Sequence[str] = (),
        *,
        watch_seconds: int = 300,
        retry_seconds: float = 1.0,
        max_retry_seconds: float = 30.0,
        absent_recheck_seconds: float = 60.0,
        max_age_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._watch_seconds = watch_seconds
        self._retry = retry_seconds
        self._max_retry = max_retry_seconds
        self._recheck = absent_recheck_seconds
        # A healthy watch answers at least once per watch_seconds (events, or its timeout).
        self._max_age = max_age_seconds if max_age_seconds is not None else 2 * watch_seconds + 60
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.caches: dict[Kind, list[KindCache]] = {
            kind: [
                KindCache(kind, ns, index)
                for ns in (list(namespaces) if kind.namespaced and namespaces else [None])
            ]
            for kind, index in WATCHED.items()
        }

    def start(self) -> None:
        for caches in self.caches.values():
            for cache in caches:
                name = f"watch {cache.path}"
                thread = threading.Thread(target=self._keep, args=(cache,), name=name, daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def synced(self) -> bool:
        return all(c.synced.is_set() for caches in self.caches.values() for c in caches)

    def wait_synced(self, timeout: float) -> bool:
        for caches in self.caches.values():
            for cache in caches:
                if not cache.synced.wait(timeout):
                    return False
        return True

    def view(self) -> cv.IndexedView:
        def lookup(kind: Kind) -> Lookup:
            return Lookup(self.caches[kind])

        return cv.IndexedView(
            pods=lookup(PODS),
            nodes=lookup(NODES),
            hpas=lookup(HPAS),
            scaled_objects=lookup(SCALED_OBJECTS),
            pod_autoscalers=lookup(POD_AUTOSCALERS),
            workloads=lookup(GPU_WORKLOADS),
            pools=lookup(GPU_NODE_POOLS),
        )

    # -- one kind's list and watch, for as long as the operator runs ---------------------------------
    def _keep(self, cache: KindCache) -> None:
        delay = self._retry
        failing = False
        while not self._stop.is_set():
            try:
                self.sync_once(cache)
                if failing:
                    log.info("watching %s again", cache.path)
                failing, delay = False, self._retry
            except Gone:
                continue  # list again, at once
            except ApiException as exc:
                if exc.status == 404 and cache.kind.optional:
                    cache.replace([], "")  # not installed: nothing to read, look again later
                    self._stop.wait(self._recheck)
                    continue
                failing = self._failed(cache, exc, failing)
                self._stop.wait(delay)
                delay = min(delay * 2, self._max_retry)
            except Exception as exc:  # connection reset, timeout, bad JSON: the same remedy, list again
                failing = self._failed(cache, exc, failing)
                self._stop.wait(delay)
                delay = min(delay * 2, self._max_retry)

    def _failed(self, cache: KindCache, exc: Exception, failing: bool) -> bool:
        cache.broken = f"{type(exc).__name__}: {exc}"[:200]
        if not failing:  # once per outage; decisions that depend on this kind hold meanwhile
            log.warning("cannot watch %s (%s); retrying with backoff", cache.path, exc)
        return True

    def stale(self) -> str | None:
        """Why the cached view cannot be trusted now (a broken watch, or no answer from the API
        server for longer than ``max_age_seconds``), or None. Cleared by the next successful list."""
        now = self._clock()
        problems = []
        for caches in self.caches.values():
            for cache in caches:
                if cache.broken is not None:
                    problems.append(f"watch of {cache.path} broken ({cache.broken})")
                elif cache.contact is not None and now - cache.contact > self._max_age:
                    problems.append(f"{cache.path} not refreshed for {now - cache.contact:.0f}s")
        return "; ".join(problems) or None

    def sync_once(self, cache: KindCache) -> None:
        """List, then follow the watch until it breaks (Gone or an error) or the cache stops."""
        # No local keeps the listed objects: this frame lives as long as the watch (minutes).
        cache.replace_pages(self._transport.list(cache.path))
        cache.contact, cache.broken = self._clock(), None
        while not self._stop.is_set():
            for event in self._transport.watch(cache.path, cache.resource_version, self._watch_seconds):
                cache.apply(event)
                cache.contact = self._clock()
                if self._stop.is_set():
                    return
            cache.contact = self._clock()  # the server ended the watch at its timeout: still in touch
