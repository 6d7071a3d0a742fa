"""Per-process thread limits for envs that run in worker processes.

torch starts one intra-op thread per core in every process. n vector-env workers (Gymnasium's
`AsyncVectorEnv`, SB3's `SubprocVecEnv`) each doing small tensor operations with a full pool
oversubscribe the cores many times over, and stepping slows down by an order of magnitude.
"""

from __future__ import annotations

import multiprocessing
import os

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # the variables torch reads for its default


def cap_threads_in_worker(threads: int = 1) -> bool:
    """Limit torch to `threads` intra-op threads when called in a multiprocessing child process.

    Does nothing in the main process, when the user chose a count through OMP_NUM_THREADS or
    MKL_NUM_THREADS, or when torch already uses no more than `threads`. Returns True when it
    lowered the count. To give workers more threads, set OMP_NUM_THREADS, or call
    `torch.set_num_threads` inside the env factory after the env is made.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if multiprocessing.parent_process() is None or any(os.environ.get(v) for v in THREAD_ENV_VARS):
        return False
    import torch

    if torch.get_num_threads() <= threads:
        return False
    torch.set_num_threads(threads)
    return True
