"""kfp.local runs a ``dsl.ParallelFor`` over an empty list the way the cluster does.

Why: ``mlco run --models lightgbm`` leaves the sequence-model loop with no items. On the KFP
backend a ``dsl.Collected`` over a loop with no iterations resolves to an empty list, and the
evaluation step ranks the models there are. kfp.local (2.17, ``kfp/local/orchestrator/
enhanced_dag_orchestrator.py``, ``_run_parallel_for_task``) returns early when there are no
items and publishes no outputs for the loop, so the consumer fails with "task 'for-loop-3' not
found". ``publishing_empty_loops`` wraps that function for the duration of a local run: after a
loop with no iterations it publishes each of the loop's declared outputs as an empty list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["publishing_empty_loops"]


@contextlib.contextmanager
def publishing_empty_loops() -> Iterator[None]:
    """While inside, kfp.local gives a loop with no iterations empty lists as its collected outputs."""
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag

    original = dag._run_parallel_for_task

    def run_loop(task_name, task_spec, *args, **kwargs) -> bool:
        failed = original(task_name, task_spec, *args, **kwargs)
        io_store = kwargs["io_store"]
        if failed or task_name in io_store._task_output_data:
            return failed
        outputs = kwargs["components"][task_spec.component_ref.name].dag.outputs
        for key in [*outputs.parameters, *outputs.artifacts]:
            io_store.put_task_output(task_name, key, [])
        return failed

    dag._run_parallel_for_task = run_loop
    try:
        yield
    finally:
        dag._run_parallel_for_task = original
