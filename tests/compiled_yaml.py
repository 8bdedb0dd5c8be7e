"""Reading a compiled pipeline YAML the way the compiled-pipeline tests check it."""

from pathlib import Path

import yaml


def read_compiled(path: Path) -> tuple[dict, dict]:
    """The PipelineSpec and the Kubernetes platform spec's executors of the compiled YAML at ``path``."""
    docs = list(yaml.safe_load_all(path.read_text()))
    assert len(docs) == 2, "the compiled YAML should hold the PipelineSpec and the Kubernetes platform spec"
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
