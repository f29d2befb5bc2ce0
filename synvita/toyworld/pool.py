"""Run the toy world's independent jobs (base models, trained rows x seeds) side by side.

Its models are so small that one thread keeps a core busy: on the 2-core machines the demo is
sized for, a job trains and scores nearly as fast on one thread beside another job as on two
threads alone (the toy LMM: 3.1 steps/s), so two processes halve the wall time of a list of jobs.
"""

from __future__ import annotations

import os


def _one_thread_then(quiet: bool, fn, *args):
    import torch

    torch.set_num_threads(1)
    if quiet:  # the parent's bar over whole jobs replaces the workers' interleaved ones
        os.environ["TQDM_DISABLE"] = "1"
    return fn(*args)


def side_by_side(calls: list[tuple], processes: int | None = None, desc: str | None = None) -> list:
    """[fn(*args) for (fn, *args) in calls], computed by up to `processes` spawned processes with one
    torch thread each. With `desc`, a progress bar (with ETA) over the finished jobs replaces the
    jobs' own bars. The first failure is raised after every job has run."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm import tqdm

    if not calls:
        return []
    with ProcessPoolExecutor(min(processes or os.cpu_count() or 1, len(calls)), mp_context=get_context("spawn")) as pool:
        jobs = [pool.submit(_one_thread_then, desc is not None, *call) for call in calls]
        for _ in tqdm(as_completed(jobs), total=len(jobs), desc=desc, unit="job", disable=desc is None):
            pass
        return [job.result() for job in jobs]
