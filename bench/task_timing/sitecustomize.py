"""Task timing for bench/pipeline_local.py: loaded by each Python started with this directory on PYTHONPATH.

Nothing happens unless ``MLCO_BENCH_TASK_TIMES`` names a file. Then, in a process that runs a
kfp component through kfp's executor (``kfp.dsl.executor.Executor.execute``, what kfp.local's
SubprocessRunner and a cluster pod both run), one JSON line is appended to that file at exit:

* ``process_start``: when the process was created (from /proc, 10 ms resolution);
* ``site``: when this module ran, i.e. the interpreter was up;
* ``execute_start``/``execute_end``: ``Executor.execute``: argument assembly, the component
  function, the executor output written (the first and last take milliseconds);
* ``import_s``: seconds inside ``execute`` spent importing modules not yet loaded (every import
  runs through ``importlib._bootstrap._find_and_load``; nested imports counted once);
* ``exit``: when the interpreter began to shut down; ``component`` and ``kind`` name the task.

Times are ``time.time()`` seconds, comparable across processes.
"""

import os

_OUT = os.environ.get("MLCO_BENCH_TASK_TIMES")

if _OUT:
    import atexit
    import importlib.util
    import json
    import sys
    import time

    _SITE = time.time()
    _record: dict = {}

    def _process_start() -> float:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/uptime") as uptime:
            now_uptime = float(uptime.read().split()[0])
        return time.time() - (now_uptime - start_ticks / os.sysconf("SC_CLK_TCK"))

    def _write() -> None:
        if not _record:
            return
        _record.update(exit=time.time(), process_start=_process_start(), site=_SITE, pid=os.getpid())
        with open(_OUT, "a") as out:
            out.write(json.dumps(_record) + "\n")

    def _patch(executor_module) -> None:
        bootstrap = sys.modules["importlib._bootstrap"]
        original_execute = executor_module.Executor.execute

        def execute(self, *args, **kwargs):
            found_and_load = bootstrap._find_and_load
            spent = [0.0, 0]

            def timed_load(*a, **k):
                spent[1] += 1
                started = time.perf_counter()
                try:
                    return found_and_load(*a, **k)
                finally:
                    spent[1] -= 1
                    if spent[1] == 0:
                        spent[0] += time.perf_counter() - started

            inputs = self.executor_input.get("inputs", {}).get("parameterValues", {})
            _record.update(component=self.func.__name__, kind=inputs.get("kind"), execute_start=time.time())
            bootstrap._find_and_load = timed_load
            try:
                return original_execute(self, *args, **kwargs)
            finally:
                bootstrap._find_and_load = found_and_load
                _record.update(execute_end=time.time(), import_s=spent[0])

        executor_module.Executor.execute = execute
        atexit.register(_write)

    class _AfterExecutorImport:
        """Patches ``kfp.dsl.executor`` once it has been imported."""

        @staticmethod
        def find_spec(name, path=None, target=None):  # noqa: ARG004 (the finder protocol)
            if name != "kfp.dsl.executor":
                return None
            sys.meta_path.remove(_AfterExecutorImport)
            spec = importlib.util.find_spec(name)
            exec_module = spec.loader.exec_module

            def exec_then_patch(module):
                exec_module(module)
                _patch(module)

            spec.loader.exec_module = exec_then_patch
            return spec

    sys.meta_path.insert(0, _AfterExecutorImport)
