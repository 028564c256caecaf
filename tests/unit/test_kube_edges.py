"""The API edges under faults: the node taint under concurrent change, evictions refused by a budget
or throttled, discovery and /scale answered with 429/503. The client calls are scripted; the retry
policy runs with a clock that only moves when it sleeps."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from rightsizer.adapters.kube import KubeWorkloads, TargetNotScalable, TargetRef
from rightsizer.adapters.kube_retry import KubeRetry, RetryPolicy
from rightsizer.adapters.node_drain import TAINT_CONFLICT_ATTEMPTS, Eviction, KubeNodeDrain, TaintConflict
from rightsizer.core.snapshot import Taint
from rightsizer.core.snapshot_parsing import snapshot_from_document
from rightsizer.core.surge import SurgeRecord
from tests.unit.planner_builders import pod

pytestmark = pytest.mark.unit

OURS = Taint("rightsizer.io/disrupted", "consolidation", "NoSchedule")
THEIRS = {"key": "maintenance.example.com/window", "value": "tonight", "effect": "NoSchedule"}


def api_error(status: int, retry_after: str | None = None, causes: list[str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="scripted")
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    details = {"causes": [{"reason": c} for c in causes or []]}
    exc.body = json.dumps({"kind": "Status", "code": status, "message": "scripted", "details": details})
    return exc


def no_wait_retry() -> tuple[KubeRetry, list[float]]:
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    return KubeRetry(RetryPolicy(), sleep=sleep, clock=lambda: now[0], jitter=lambda: 0.5), slept


class FakeCore:
    """The CoreV1Api calls KubeNodeDrain makes, over one node; `faults[call]` are raised first."""

    def __init__(self, taints: list[dict[str, str]] | None = None) -> None:
        self.node = {
            "kind": "Node",
            "metadata": {"name": "gpu-1", "resourceVersion": "1", "annotations": {}},
            "spec": {"taints": list(taints or [])},
        }
        self.faults: dict[str, list[BaseException]] = {}
        self.calls: list[tuple[str, Any]] = []
        self.on_read: list[Any] = []  # callbacks run after each read (someone else changing the node)

    def _fault(self, call: str) -> None:
        queue = self.faults.get(call) or []
        if queue:
            raise queue.pop(0)

    def read_node(self, name: str, _preload_content: bool = True) -> Any:
        self.calls.append(("read_node", name))
        self._fault("read_node")
        data = json.dumps(self.node).encode()
        for callback in self.on_read:
            callback(self)
        return SimpleNamespace(data=data)

    def patch_node(self, name: str, body: Mapping[str, Any], _content_type: str | None = None) -> None:
        self.calls.append(("patch_node", copy.deepcopy(body)))
        self._fault("patch_node")
        version = (body.get("metadata") or {}).get("resourceVersion")
        if version is not None and version != self.node["metadata"]["resourceVersion"]:
            raise api_error(409)
        if "taints" in (body.get("spec") or {}):
            self.node["spec"]["taints"] = list(body["spec"]["taints"])
        self.bump()

    def bump(self) -> None:
        meta = self.node["metadata"]
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def create_namespaced_pod_eviction(self, name: str, namespace: str, body: Any) -> None:
        self.calls.append(("evict", body))
        self._fault("evict")

    def create_namespaced_event(self, namespace: str, body: Any) -> None:
        self.calls.append(("event", body.reason))
        self._fault("event")

    def count(self, call: str) -> int:
        return sum(1 for c, _ in self.calls if c == call)


def drain(core: FakeCore) -> tuple[KubeNodeDrain, list[float]]:
    retry, slept = no_wait_retry()
    edge = KubeNodeDrain.__new__(KubeNodeDrain)
    edge._core = core  # type: ignore[assignment]
    edge._retry = retry
    return edge, slept


def taint_keys(core: FakeCore) -> list[str]:
    return sorted(t["key"] for t in core.node["spec"]["taints"])


# -- the taint ----------------------------------------------------------------------------------------


def test_a_concurrent_taint_change_is_reread_and_neither_lost_nor_overwritten() -> None:
    core = FakeCore()

    def someone_else_taints(fake: FakeCore) -> None:
        if fake.count("read_node") == 1:  # right after our first read, before our patch
            fake.node["spec"]["taints"].append(THEIRS)
            fake.bump()

    core.on_read.append(someone_else_taints)
    edge, _ = drain(core)
    edge.set_taint("gpu-1", OURS, True)
    assert taint_keys(core) == sorted([OURS.key, THEIRS["key"]])
    patches = [b for c, b in core.calls if c == "patch_node"]
    assert len(patches) == 2  # the first refused with 409, the second computed from the fresh node
    assert patches[1]["metadata"]["resourceVersion"] == "2"


def test_removing_our_taint_keeps_everybody_elses() -> None:
    core = FakeCore([THEIRS, {"key": OURS.key, "value": OURS.value, "effect": OURS.effect}])
    edge, _ = drain(core)
    edge.set_taint("gpu-1", OURS, False)
    assert taint_keys(core) == [THEIRS["key"]]


def test_a_taint_already_as_wanted_is_not_written_again() -> None:
    core = FakeCore([{"key": OURS.key, "value": OURS.value, "effect": OURS.effect}])
    edge, _ = drain(core)
    edge.set_taint("gpu-1", OURS, True)
    edge.set_taint("gpu-1", Taint("absent", "", "NoSchedule"), False)
    assert core.count("patch_node") == 0


def test_taints_that_keep_changing_give_up_after_a_bounded_number_of_rereads() -> None:
    core = FakeCore()
    core.on_read.append(lambda fake: fake.bump())  # someone writes the node after every read of ours
    edge, _ = drain(core)
    with pytest.raises(TaintConflict, match="changed 5 times") as raised:
        edge.set_taint("gpu-1", OURS, True)
    assert core.count("patch_node") == TAINT_CONFLICT_ATTEMPTS
    assert "tries again next pass" in str(raised.value)


def test_a_taint_patch_whose_answer_was_lost_is_not_applied_twice() -> None:
    core = FakeCore()
    real_patch = core.patch_node

    def applied_but_answer_lost(name: str, body: Mapping[str, Any], _content_type: str | None = None) -> None:
        real_patch(name, body, _content_type)
        if core.count("patch_node") == 1:
            raise api_error(503)

    core.patch_node = applied_but_answer_lost  # type: ignore[method-assign]
    edge, slept = drain(core)
    edge.set_taint("gpu-1", OURS, True)
    # The retried patch meets our own change (409), the re-read finds the taint there: done.
    assert taint_keys(core) == [OURS.key]
    assert (
        core.node["spec"]["taints"].count({"key": OURS.key, "value": OURS.value, "effect": OURS.effect}) == 1
    )
    assert len(slept) == 1


def test_a_throttled_taint_patch_is_retried_after_retry_after() -> None:
    core = FakeCore()
    core.faults["patch_node"] = [api_error(429, "2"), api_error(503)]
    edge, slept = drain(core)
    edge.set_taint("gpu-1", OURS, True)
    assert taint_keys(core) == [OURS.key]
    assert slept[0] == 2.0 and len(slept) == 2


# -- evictions ----------------------------------------------------------------------------------------


def snapshot_pod(uid: str = "uid-1") -> Any:
    raw = pod("web-1", "gpu-1", gpus=1)
    raw["metadata"]["uid"] = uid
    return snapshot_from_document({"kind": "List", "items": [raw]}).pods[0]


def test_a_budget_refusal_is_blocked_at_once_and_never_retried() -> None:
    core = FakeCore()
    # The API server may attach a Retry-After to it; it is still the budget saying no.
    core.faults["evict"] = [api_error(429, "10", causes=["DisruptionBudget"])]
    edge, slept = drain(core)
    result = edge.evict(snapshot_pod())
    assert result.outcome is Eviction.BLOCKED and "429" in result.message
    assert core.count("evict") == 1 and slept == []


def test_a_throttled_eviction_is_retried_like_any_call() -> None:
    core = FakeCore()
    core.faults["evict"] = [api_error(429, "1"), api_error(503)]
    edge, _ = drain(core)
    assert edge.evict(snapshot_pod()).outcome is Eviction.EVICTED
    assert core.count("evict") == 3


def test_an_eviction_carries_the_pods_uid_so_a_retry_never_evicts_a_newer_pod_of_that_name() -> None:
    core = FakeCore()
    core.faults["evict"] = [api_error(503), api_error(409)]  # lost answer, then: the UID no longer matches
    edge, _ = drain(core)
    assert edge.evict(snapshot_pod("uid-42")).outcome is Eviction.GONE
    body = next(b for c, b in core.calls if c == "evict")
    assert body.delete_options.preconditions.uid == "uid-42"


@pytest.mark.parametrize(("status", "outcome"), [(404, Eviction.GONE), (403, Eviction.BLOCKED)])
def test_other_eviction_answers(status: int, outcome: Eviction) -> None:
    core = FakeCore()
    core.faults["evict"] = [api_error(status)]
    edge, _ = drain(core)
    assert edge.evict(snapshot_pod()).outcome is outcome
    assert core.count("evict") == 1


def test_an_eviction_the_api_server_never_takes_is_blocked_not_raised() -> None:
    core = FakeCore()
    core.faults["evict"] = [api_error(503)] * 20
    edge, _ = drain(core)
    result = edge.evict(snapshot_pod())
    assert result.outcome is Eviction.BLOCKED and "did not answer" in result.message


def test_an_event_that_cannot_be_posted_does_not_abort_the_drain() -> None:
    core = FakeCore()
    core.faults["event"] = [api_error(429, "1"), api_error(503)]
    edge, _ = drain(core)
    edge.event("gpu-1", "Normal", "NodeRemoved", "done")  # 503 on a create: not retried, not raised
    assert core.count("event") == 2


# -- targets ------------------------------------------------------------------------------------------


APPS_V1 = {
    "resources": [
        {"name": "deployments", "kind": "Deployment"},
        {"name": "deployments/scale", "kind": "Scale"},
        {"name": "controllerrevisions", "kind": "ControllerRevision"},
    ]
}
SCALE = {"spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}}
DEPLOYMENT = {"metadata": {"annotations": {}}, "spec": {"replicas": 2}}


class ScriptedWorkloads(KubeWorkloads):
    """KubeWorkloads whose requests answer from a script: (method, path) -> answers in turn."""

    def __init__(self, script: dict[tuple[str, str], list[Any]]) -> None:
        super().__init__(api=SimpleNamespace(), retry=no_wait_retry()[0])  # type: ignore[arg-type]
        self.script = script
        self.sent: list[tuple[str, str, Any]] = []

    def _request(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        self.sent.append((method, path, body))
        answers = self.script[(method, path)]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


WEB = TargetRef("apps/v1", "Deployment", "web")
PATH = "/apis/apps/v1/namespaces/ml/deployments/web"


def test_a_discovery_answered_with_503_is_retried_not_taken_for_an_unscalable_target() -> None:
    kube = ScriptedWorkloads(
        {
            ("GET", "/apis/apps/v1"): [api_error(503), APPS_V1],
            ("GET", f"{PATH}/scale"): [SCALE],
            ("GET", PATH): [DEPLOYMENT],
        }
    )
    assert kube.read_scale("ml", WEB).desired == 2
    kube.read_scale("ml", WEB)
    assert [s[1] for s in kube.sent].count("/apis/apps/v1") == 2  # once retried, then remembered


def test_a_kind_without_scale_is_not_scalable() -> None:
    listing = {"resources": [{"name": "configmaps", "kind": "ConfigMap"}]}
    kube = ScriptedWorkloads({("GET", "/api/v1"): [listing]})
    with pytest.raises(TargetNotScalable, match="configmaps has no /scale"):
        kube.read_scale("ml", TargetRef("v1", "ConfigMap", "x"))


def test_a_throttled_scale_patch_is_sent_again_with_the_same_absolute_value() -> None:
    kube = ScriptedWorkloads(
        {
            ("GET", "/apis/apps/v1"): [APPS_V1],
            ("GET", PATH): [{"metadata": {"resourceVersion": "7"}}],
            ("PATCH", f"{PATH}/scale"): [api_error(429, "1"), api_error(503), api_error(429, "2"), SCALE],
        }
    )
    kube.set_replicas("ml", WEB, 3)
    bodies = [body for method, path, body in kube.sent if method == "PATCH"]
    assert bodies == [{"spec": {"replicas": 3}}] * 4


SURGED = {
    "metadata": {
        "resourceVersion": "9",
        "annotations": {"rightsizer.io/drain-surge": SurgeRecord("gpu-1", 3, 1, 3).to_json()},
    },
    "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}}},
    "status": {"replicas": 4},
}


def test_the_replica_loop_sees_a_drain_surged_target_at_its_count_without_the_surge() -> None:
    kube = ScriptedWorkloads({("GET", "/apis/apps/v1"): [APPS_V1], ("GET", PATH): [SURGED]})
    scale = kube.read_scale("ml", WEB)
    assert (scale.desired, scale.current) == (3, 3)


def test_a_count_set_during_a_surge_goes_on_top_of_it_and_is_what_the_drain_restores() -> None:
    kube = ScriptedWorkloads(
        {("GET", "/apis/apps/v1"): [APPS_V1], ("GET", PATH): [SURGED], ("PATCH", PATH): [{}]}
    )
    kube.set_replicas("ml", WEB, 5)
    (body,) = [body for method, _, body in kube.sent if method == "PATCH"]
    record = SurgeRecord.from_json(body["metadata"]["annotations"]["rightsizer.io/drain-surge"])
    assert body["spec"] == {"replicas": 6} and body["metadata"]["resourceVersion"] == "9"
    assert record is not None and (record.original, record.surge, record.node) == (5, 1, "gpu-1")


def test_a_surge_landing_between_read_and_write_is_read_again_not_overwritten() -> None:
    plain = {"metadata": {"resourceVersion": "8", "annotations": {}}, "spec": {"replicas": 3}}
    kube = ScriptedWorkloads(
        {
            ("GET", "/apis/apps/v1"): [APPS_V1],
            ("GET", PATH): [plain, SURGED],
            ("PATCH", f"{PATH}/scale"): [api_error(409)],
            ("PATCH", PATH): [{}],
        }
    )
    kube.set_replicas("ml", WEB, 2)
    patches = [(path, body["spec"]) for method, path, body in kube.sent if method == "PATCH"]
    assert patches == [(f"{PATH}/scale", {"replicas": 2}), (PATH, {"replicas": 3})]


def test_a_deployment_is_read_with_one_request_its_scale_taken_from_the_object() -> None:
    deployment = {
        "metadata": {"annotations": {"rightsizer.io/currency": "USD"}},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
        "status": {"replicas": 4},
    }
    kube = ScriptedWorkloads({("GET", "/apis/apps/v1"): [APPS_V1], ("GET", PATH): [deployment]})
    scale = kube.read_scale("ml", WEB)
    assert (scale.desired, scale.current, scale.selector) == (3, 4, "app=web")
    assert scale.annotations == {"rightsizer.io/currency": "USD"}
    assert [s[1] for s in kube.sent if s[1] != "/apis/apps/v1"] == [PATH]  # no separate /scale read


def test_a_pod_annotation_patch_does_not_decode_the_patched_pod() -> None:
    drained: list[bool] = []
    calls: list[dict[str, Any]] = []

    class Core:
        def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
            calls.append(kwargs)
            return SimpleNamespace(drain_conn=lambda: drained.append(True))

    kube = KubeWorkloads(api=SimpleNamespace(), retry=no_wait_retry()[0])  # type: ignore[arg-type]
    kube._core = Core()
    kube.annotate_pod("ml", "web-1", {"rightsizer.io/currency": "USD"})
    assert calls[0]["_preload_content"] is False
    assert drained == [True]  # the connection goes back to the pool
