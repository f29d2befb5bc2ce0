"""Run the toy world's independent jobs (base models, trained rows x seeds) side by side.

Its models are so small that one thread keeps a core busy: on the 2-core machines the demo is
sized for, a job trains and scores nearly as fast on one thread beside another job as on two
threads alone (the toy LMM: 3.1 steps/s), so two processes halve the wall time of a list of
many similar jobs. A few jobs of unequal length (the three base models) can ask for one process
each, so that no core waits alone for the longest.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# What the toy world's jobs import: the libraries, and the two stages a trained row runs. A spawned
# process took 4-16 s per job to import them; a fork server that has imported them (and run
# nothing) starts each job's process at once, a new process with nothing of the jobs before it,
# every job from the same state (benchmarks/bench_pool.py).
PRELOAD = ["torch", "transformers", "peft", "accelerate", "av", "synvita.training.recipe",
           "synvita.evaluation.harness"]


def _start_worker(log: Path | None, bars_lock) -> None:
    if log is not None:  # the jobs' own progress bars and warnings, which would interleave on screen
        sys.stderr = open(log, "a", buffering=1, encoding="utf-8")
    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    # one lock for every process's bars, so that jobs drawing at their own `position` keep to their lines
    tqdm.set_lock(bars_lock)


def side_by_side(calls: list[tuple], processes: int | None = None, log: Path | None = None) -> list:
    """[fn(*args) for (fn, *args) in calls], computed by up to `processes` (default: one per CPU core)
    processes at a time, a new one for each job (forked from a server that has imported `PRELOAD`;
    spawned where there is no fork server), with one torch thread each, sharing tqdm's lock: a job
    whose bar has its own `position` draws it on its own line. With `log`,
    the jobs' standard error goes to that file and one progress bar (with ETA) over the finished
    jobs shows instead. The first failure is raised (with the job's traceback) after every job has
    run. The processes import the caller's main module again, so a script calls this (or the
    demo) under `if __name__ == "__main__":`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    if not calls:
        return []
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
    else:
        context = multiprocessing.get_context("spawn")
    # A new process for every job: a trained model came out different (by up to 2.5 AUC points)
    # depending on which jobs its process had run before, and the same in a process of its own.
    with ProcessPoolExecutor(min(processes or os.cpu_count() or 1, len(calls)), mp_context=context,
                             initializer=_start_worker, initargs=(log, context.RLock()), max_tasks_per_child=1) as pool:
        jobs = [pool.submit(*call) for call in calls]
        for _ in tqdm(as_completed(jobs), total=len(jobs), desc="jobs", unit="job", disable=log is None):
            pass
        return [job.result() for job in jobs]
