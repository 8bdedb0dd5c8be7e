"""Reading a compiled pipeline YAML the way the compiled-pipeline tests check it."""

from pathlib import Path

import yaml

# The committed pipeline YAML, inside the package (ml_cloud_optimizer.pipelines.runners.compile writes it).
COMPILED_DIR = Path(__file__).resolve().parents[1] / "src" / "ml_cloud_optimizer" / "pipelines" / "compiled"
WORKLOAD_YAML = COMPILED_DIR / "workload_pipeline.yaml"
BATCH_YAML = COMPILED_DIR / "batch_pipeline.yaml"


def read_compiled(path: Path) -> tuple[dict, dict]:
    """The PipelineSpec and the Kubernetes platform spec's executors of the compiled YAML at ``path``."""
    docs = list(yaml.safe_load_all(path.read_text()))
    assert len(docs) == 2, "the compiled YAML should hold the PipelineSpec and the Kubernetes platform spec"
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
