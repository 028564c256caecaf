"""The generated CRDs are structural schemas the real API server accepts, and say what users see."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from rightsizer.api import crdgen
from rightsizer.api.v1alpha1 import RESOURCES, GPUNodePool, GPUWorkload
from rightsizer.cli import crds as crds_cli

pytestmark = pytest.mark.unit

CRDS = {resource.resource.kind: crdgen.crd_for(resource) for resource in RESOURCES}
FORBIDDEN_KEYS = {"$ref", "$defs", "oneOf", "allOf", "not", "const", "title", "definitions", "examples"}


def version(kind: str) -> dict[str, Any]:
    version: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]
    return version


def root(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = version(kind)["schema"]["openAPIV3Schema"]
    return schema


def nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}" if path else name)
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from nodes(schema["additionalProperties"], f"{path}.*")


ALL_NODES = [(kind, path, node) for kind in CRDS for path, node in nodes(root(kind))]
SPEC_NODES = [(kind, path, node) for kind, path, node in ALL_NODES if path.startswith("spec")]


def node_id(value: Any) -> str:
    return value if isinstance(value, str) else ""


@pytest.mark.parametrize(("kind", "path", "node"), ALL_NODES, ids=node_id)
def test_every_node_has_a_type_and_no_json_schema_only_keyword(
    kind: str, path: str, node: Mapping[str, Any]
) -> None:
    assert not FORBIDDEN_KEYS & node.keys(), f"{kind} {path}: {FORBIDDEN_KEYS & node.keys()}"
    if node.get("x-kubernetes-int-or-string"):
        assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}] and "type" not in node
    else:
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        assert "anyOf" not in node, f"{kind} {path}: anyOf (e.g. Optional rendered as a union with null)"
    assert "nullable" not in node and node.get("default", 0) is not None
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        assert isinstance(node.get(bound, True), bool), f"{kind} {path}: OpenAPI v3.0 wants a boolean {bound}"
    if node.get("type") == "object":
        assert not ("properties" in node and "additionalProperties" in node), path
    if node.get("type") == "array":
        assert "items" in node, path


@pytest.mark.parametrize(("kind", "path", "node"), SPEC_NODES, ids=node_id)
def test_spec_strings_lists_and_maps_are_bounded_so_cel_cost_estimates_pass(
    kind: str, path: str, node: Mapping[str, Any]
) -> None:
    if node.get("type") == "string":
        assert "maxLength" in node or "enum" in node, f"{kind} {path}"
    if node.get("type") == "array":
        assert "maxItems" in node, f"{kind} {path}"
    if isinstance(node.get("additionalProperties"), Mapping):
        assert "maxProperties" in node, f"{kind} {path}"


@pytest.mark.parametrize("kind", CRDS)
def test_every_field_is_described_for_kubectl_explain(kind: str) -> None:
    undescribed = [
        path
        for path, node in nodes(root(kind))
        if path.count(".") >= 1 and not path.endswith(("[]", ".*")) and not node.get("description")
    ]
    assert undescribed == []


def _resolve(schema: Mapping[str, Any], dotted: str) -> Mapping[str, Any] | None:
    node: Mapping[str, Any] | None = schema
    for part in dotted.strip(".").split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


@pytest.mark.parametrize("kind", CRDS)
def test_cel_rules_have_messages_and_field_paths_that_exist(kind: str) -> None:
    rules = 0
    for path, node in nodes(root(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            assert rule["message"] and "\n" not in rule["message"], f"{path}: {rule}"
            if "fieldPath" in rule:
                assert _resolve(node, rule["fieldPath"]) is not None, f"{path}: {rule['fieldPath']}"
            assert rule.get("reason", "FieldValueInvalid") in {
                "FieldValueInvalid",
                "FieldValueRequired",
                "FieldValueForbidden",
                "FieldValueDuplicate",
            }
    assert rules >= 5


def test_workload_rules_spanning_fields_are_in_the_crd() -> None:
    spec_rules = {r["rule"] for r in root("GPUWorkload")["properties"]["spec"]["x-kubernetes-validations"]}
    assert "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas" in spec_rules
    assert "self.minReplicas > 0 || self.workloadType == 'Inference'" in spec_rules
    assert "self.minReplicas > 0 || has(self.wakeUp)" in spec_rules


@pytest.mark.parametrize(
    ("kind", "scope", "plural", "short"),
    [("GPUWorkload", "Namespaced", "gpuworkloads", "gw"), ("GPUNodePool", "Cluster", "gpunodepools", "gnp")],
)
def test_names_scope_and_subresources(kind: str, scope: str, plural: str, short: str) -> None:
    crd = CRDS[kind]
    assert crd["metadata"]["name"] == f"{plural}.rightsizer.io"
    assert crd["spec"]["group"] == "rightsizer.io" and crd["spec"]["scope"] == scope
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        kind,
        plural,
        [short],
        ["rightsizer"],
    )
    assert version(kind)["name"] == "v1alpha1" and version(kind)["served"] and version(kind)["storage"]
    assert version(kind)["subresources"] == {"status": {}}
    assert root(kind)["required"] == ["spec"]


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("GPUWorkload", ["Type", "Target", "Can", "Mode", "Util%", "Replicas", "Desired", "$/h", "Age"]),
        ("GPUNodePool", ["Model", "Nodes", "GPUs", "Active", "Idle $/h", "Age"]),
    ],
)
def test_printer_columns_point_at_fields_of_their_type(kind: str, columns: list[str]) -> None:
    printed = version(kind)["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    for column in printed:
        if column["jsonPath"].startswith(".metadata"):
            continue
        node = _resolve(root(kind), column["jsonPath"])
        assert node is not None, column
        assert node["type"] == column["type"], column


def test_list_of_conditions_is_a_map_keyed_by_type() -> None:
    for kind in CRDS:
        conditions = root(kind)["properties"]["status"]["properties"]["conditions"]
        assert conditions["x-kubernetes-list-type"] == "map"
        assert conditions["x-kubernetes-list-map-keys"] == ["type"]
        assert "type" in conditions["items"]["required"]


def test_rendering_is_deterministic() -> None:
    assert crdgen.generate() == crdgen.generate()
    text = crdgen.generate()["rightsizer.io_gpuworkloads.yaml"]
    assert text.startswith(crdgen.HEADER)


def test_crds_are_generated_for_both_resources_and_kopf_peering_in_a_fixed_order() -> None:
    assert list(crdgen.generate()) == [
        "rightsizer.io_gpuworkloads.yaml",
        "rightsizer.io_gpunodepools.yaml",
        "kopf.dev_clusterkopfpeerings.yaml",
        "kopf.dev_kopfpeerings.yaml",
    ]
    assert [r.resource.kind for r in RESOURCES] == [GPUWorkload.resource.kind, GPUNodePool.resource.kind]


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    crds_cli.register(parser.add_subparsers())
    args = parser.parse_args(["crds", *argv])
    result: int = args.func(args)
    return result


def test_crds_command_writes_then_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--output-dir", str(tmp_path), "--check") == 1
    assert "is missing" in capsys.readouterr().err
    assert run_cli("--output-dir", str(tmp_path)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "kopf.dev_clusterkopfpeerings.yaml",
        "kopf.dev_kopfpeerings.yaml",
        "rightsizer.io_gpunodepools.yaml",
        "rightsizer.io_gpuworkloads.yaml",
    ]
    assert run_cli("--output-dir", str(tmp_path), "--check") == 0


def test_crds_check_lists_changed_and_leftover_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli("--output-dir", str(tmp_path))
    (tmp_path / "rightsizer.io_gpuworkloads.yaml").write_text("edited by hand\n")
    (tmp_path / "rightsizer.io_gpujobs.yaml").write_text("old\n")
    capsys.readouterr()
    assert run_cli("--output-dir", str(tmp_path), "--check") == 1
    err = capsys.readouterr().err
    assert "rightsizer.io_gpuworkloads.yaml differs from the API models" in err
    assert "rightsizer.io_gpujobs.yaml belongs to no resource" in err
    assert "rightsizer.io_gpunodepools.yaml" not in err
