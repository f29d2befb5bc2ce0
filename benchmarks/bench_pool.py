"""Start-up cost of the toy world's jobs: `side_by_side` (a fork server that has imported the
libraries) against a new spawned process per job (what it did before).

    python benchmarks/bench_pool.py [--jobs 16] [--processes 2]

Each job imports what a demo job (`demo.train_and_evaluate`) imports, the training recipe and the
evaluation harness, and returns. Both pools start a new process for every job; the fork server's
own start (importing `pool.PRELOAD` once) is included, as a demo run pays it once. One line holds
the wall times and their ratio.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from synvita.toyworld.pool import side_by_side


def demo_job_imports() -> None:
    import synvita.evaluation.harness  # noqa: F401
    import synvita.training.recipe  # noqa: F401


def spawned(jobs: int, processes: int) -> None:
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for job in [pool.submit(demo_job_imports) for _ in range(jobs)]:
            job.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)  # the demo trains 16 models
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    side_by_side([(demo_job_imports,)] * args.jobs, processes=args.processes)
    forked = time.perf_counter() - start
    start = time.perf_counter()
    spawned(args.jobs, args.processes)
    spawn = time.perf_counter() - start
    print(f"{args.jobs} jobs on {args.processes} processes: side_by_side {forked:.1f} s, "
          f"spawned {spawn:.1f} s, ratio side_by_side / spawned = {forked / spawn:.2f}")


if __name__ == "__main__":
    main()
