"""Offline validation of custom resources against the CRDs in ``../shared/schemas/``, unknown fields rejected.

The API server prunes fields a CRD does not list instead of refusing them, so a typo would pass
silently in a cluster; here every object node that lists ``properties`` and does not preserve
unknown fields gets ``additionalProperties: false`` (the recipe in ``../shared/schemas/README.md``).
A missing schema file fails the test with its path, rather than skipping it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jsonschema
import pytest
import yaml

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas"

# kind -> (file, served version) for every CRD the product emits or deploys.
CRDS = {
    "VerticalPodAutoscaler": ("autoscaling.k8s.io_verticalpodautoscalers.yaml", "v1"),
    "ScaledObject": ("keda.sh_scaledobjects.yaml", "v1alpha1"),
    "PrometheusRule": ("monitoring.coreos.com_prometheusrules.yaml", "v1"),
    "ServiceMonitor": ("monitoring.coreos.com_servicemonitors.yaml", "v1"),
    "PodMonitor": ("monitoring.coreos.com_podmonitors.yaml", "v1"),
    "InferenceService": ("serving.kserve.io_inferenceservices.yaml", "v1beta1"),
}


def strict_schema(node):
    """Reject unknown fields wherever the CRD lists properties and preserves nothing unknown."""
    if isinstance(node, dict):
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            strict_schema(value)
    elif isinstance(node, list):
        for value in node:
            strict_schema(value)
    return node


@functools.cache
def crd_schema(kind: str) -> dict:
    """The (non-strict) OpenAPI v3 schema of ``kind``'s served version, as the API server checks it."""
    file, version = CRDS[kind]
    path = SCHEMAS / file
    if not path.is_file():
        pytest.fail(f"CRD schema for {kind} not found at {path}: ../shared/schemas/ is needed beside the checkout")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for crd in yaml.load_all(path.read_text(), Loader=loader):
        if crd and crd.get("spec", {}).get("names", {}).get("kind") == kind:
            (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
            return served["schema"]["openAPIV3Schema"]
    pytest.fail(f"{path} holds no CustomResourceDefinition of kind {kind}")


@functools.cache
def _validator(kind: str) -> jsonschema.Draft7Validator:
    import copy

    return jsonschema.Draft7Validator(strict_schema(copy.deepcopy(crd_schema(kind))))


def crd_errors(obj: dict) -> list[str]:
    """Every way ``obj`` breaks its kind's CRD with unknown fields rejected; empty when it validates."""
    return [
        f"{obj['kind']}/{obj.get('metadata', {}).get('name')}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(obj["kind"]).iter_errors(obj)
    ]
