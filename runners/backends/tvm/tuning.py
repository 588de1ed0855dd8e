"""MetaSchedule tuning with a builder limit we set, and a check that something was measured.

Relax's ``static_shape_tuning`` pipeline tunes with MetaSchedule's default ``LocalBuilder``, whose
limit is 30 s per candidate. A build worker imports TVM first; on the loaded 2-core test VM that took
longer than 30 s, every candidate was killed, and the tuning still "finished": its database held only
failed records (MetaSchedule writes a run time of 1e10 s for a candidate that failed to build or
run), so an artefact called tuned ran default schedules. Here the same steps run with the builder
given :data:`BUILD_S` per candidate, on this host (:func:`local_tune`: ``LocalRunner``) or on a
board (``rpc.rpc_tuner``: ``RPCRunner``), and a tuning in which no candidate was measured raises
ModelCompileError instead of producing an artefact.

Steps (Apache TVM 0.27, ``python/tvm/relax/pipeline.py`` ``static_shape_tuning_pipeline`` and
``python/tvm/s_tir/meta_schedule/relax_integration.py`` ``tune_relax``): ``DecomposeOpsForInference``,
``CanonicalizeBindings`` and the zero pipeline (legalize, fuse), then ``tune_relax`` over the fused
TIR functions; the callers then run the pipeline again with 0 trials to apply the database's best
records (``compile.apply_database``).
"""

from __future__ import annotations

import glob
import json
import os

from runners.errors import ModelCompileError

#: MetaSchedule's LocalBuilder limit per candidate (seconds); its default is 30 s (see above)
BUILD_S = 120.0
#: run times at or above this are MetaSchedule's mark of a candidate that failed (seconds)
FAILED_RUN_S = 1e9


def measured_records(work_dir) -> tuple:
    """``(measured, records, first error)`` of a MetaSchedule database folder: the tuning records
    whose run times are all real, all records, and the first ``Error in building/running`` line of
    its logs with the line after it ("" when none). Raises nothing for a missing folder: (0, 0, "")."""
    measured = total = 0
    path = os.path.join(str(work_dir), "database_tuning_record.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            for line in (ln for ln in fh if ln.strip()):
                total += 1
                secs = (json.loads(line)[1][1:2] or [[]])[0] or []
                measured += bool(secs) and all(float(x) < FAILED_RUN_S for x in secs)
    error = ""
    for log in sorted(glob.glob(os.path.join(str(work_dir), "logs", "*.log"))):
        with open(log, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
        at = next((i for i, ln in enumerate(lines) if "Error in building" in ln or "Error in running" in ln),
                  None)
        if at is not None:
            error = " ".join(ln.strip() for ln in lines[at:at + 2])[-400:]
            break
    return measured, total, error


def meta_tune(mod, target: dict, trials: int, work_dir: str, per_task: int, runner, where: str,
              build_s: float = BUILD_S):
    """Tune ``mod`` with MetaSchedule (``trials`` in all, at most ``per_task`` each, 0: no cap) into
    the database in ``work_dir``, candidates built here (``build_s`` seconds each) and timed by
    ``runner``; the caller applies the database (``compile.apply_database``).

    Raises:
        ModelCompileError: no candidate was measured (every one failed to build or run ``where``).
    """
    import tvm
    from tvm import relax
    from tvm.relax.pipeline import zero_pipeline
    from tvm.s_tir.meta_schedule.builder import LocalBuilder
    from tvm.s_tir.meta_schedule.relax_integration import tune_relax

    tgt = tvm.target.Target(dict(target))
    with tgt:
        pre = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                        relax.transform.CanonicalizeBindings(), zero_pipeline()])(mod)
    tune_relax(pre, {}, tgt, str(work_dir), max_trials_global=int(trials),
               max_trials_per_task=int(per_task) or None, runner=runner,
               builder=LocalBuilder(timeout_sec=float(build_s)),
               num_trials_per_iter=min(64, max(int(trials), 1)))
    measured, total, error = measured_records(work_dir)
    if total and not measured:
        raise ModelCompileError(f"no candidate was measured {where}: all {total} failed to build or run "
                                f"({error or 'no error logged'})")


def local_tune(mod, target: dict, trials: int, work_dir: str, per_task: int = 0):
    """:func:`meta_tune` with MetaSchedule's ``LocalRunner``: candidates timed on this host."""
    from tvm.s_tir.meta_schedule.runner import LocalRunner

    meta_tune(mod, target, trials, work_dir, per_task, LocalRunner(), "on this host")
