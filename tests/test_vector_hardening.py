"""Vector envs that fail loudly instead of hanging: make_vec's worker pipes, forked Gymnasium workers, threads."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import carla_gym
from carla_gym.env.threads import cap_threads_in_worker
from carla_gym.env.vector import CLOSE_GRACE_SECONDS, KILL_WAIT_SECONDS
from carla_gym.sim import make_backend
from carla_gym.sim.embedded.renderer import RenderError

TINY = dict(perception="ground_truth", camera_size=(32, 64), obs_size=(8, 16), vehicles=2, pedestrians=2)


# -- make_vec ------------------------------------------------------------------------------------
# Each test starts one vec env (about ten seconds) and walks it through several failures.
@pytest.mark.timeout(180)
def test_wrong_action_count_and_a_failed_world():
    vec = carla_gym.make_vec(2, timeout=60.0, **TINY)
    try:
        vec.seed(3)
        vec.reset()
        for actions, got in (
            (np.zeros((1, 2)), "got 1 actions"),
            (np.zeros((3, 2)), "got 3 actions"),
            (0.5, "got a scalar"),
        ):
            with pytest.raises(ValueError, match=f"expected 2 actions, {got}"):
                vec.step(actions)
        obs, *_ = vec.step(np.zeros((2, 2)))
        assert obs["state"].shape[0] == 2
        assert vec.get_attr("steps") == [1, 1]  # the bad calls moved no world

        with pytest.raises(RuntimeError, match="world 0 failed in its worker process:(.|\n)*AttributeError"):
            vec.env_method("no_such_method", indices=[0])
        with pytest.raises(RuntimeError, match="unusable after a worker failed.*world 0"):
            vec.reset()
        vec.vector_env._failure = None  # look past that guard: the next command finds the exited worker
        with pytest.raises(
            RuntimeError, match="world 0's worker process .* exit code 0; its last traceback:(.|\n)*AttributeError"
        ):
            vec.step(np.zeros((2, 2)))
    finally:
        start = time.monotonic()
        vec.close()
    assert time.monotonic() - start < 30.0  # well under the 60 s timeout: close does not wait on the exited worker
    assert not any(p.is_alive() for p in vec.vector_env._procs)


@pytest.mark.timeout(180)
def test_killed_and_unresponsive_workers():
    vec = carla_gym.make_vec(2, timeout=60.0, **TINY)
    try:
        vec.reset()
        workers = vec.vector_env  # the Gymnasium vector env under the SB3 adapter
        workers._procs[0].kill()
        os.kill(workers._procs[1].pid, signal.SIGSTOP)  # alive but never answers; only SIGKILL ends it
        start = time.monotonic()
        with pytest.raises(
            RuntimeError, match=r"world 0's worker process \(pid \d+\) died with exit code -9 \(killed by SIGKILL\)"
        ):
            vec.step(np.zeros((2, 2)))
        assert time.monotonic() - start < 30.0  # noticed through the process sentinel, not the 60 s timeout
        workers.timeout, workers._failure = 1.0, None
        with pytest.raises(RuntimeError, match=r"world 1 did not answer within 1 s"):
            workers._receive(1)
    finally:
        start = time.monotonic()
        vec.close()
    assert time.monotonic() - start < CLOSE_GRACE_SECONDS + 1.0 + KILL_WAIT_SECONDS + 2.0  # grace, terminate, kill
    assert workers._procs[1].exitcode == -signal.SIGKILL


def test_timeout_must_be_positive():
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got 0"):
        carla_gym.make_vec(1, timeout=0, **TINY)


# -- the renderer across processes -----------------------------------------------------------------
def run_python(code: str, timeout: float = 100.0) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter: its GL and fork state cannot leak into (or from) this process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("perception", ["ground_truth", pytest.param("model", marks=pytest.mark.slow)])
def test_gymnasium_async_vector_env_with_fork_steps(perception):
    # Gymnasium builds one env in the parent (for the spaces) before forking its workers.
    result = run_python(f"""
        import gymnasium as gym, numpy as np, carla_gym
        from carla_gym.env.threads import cap_threads_in_worker

        def make():
            cap_threads_in_worker()
            return gym.make("CarlaPerception-v0", perception="{perception}", camera_size=(32, 64), obs_size=(8, 16),
                            vehicles=2, pedestrians=2)

        envs = gym.vector.AsyncVectorEnv([make] * 2, context="fork")
        obs, _ = envs.reset(seed=1)
        assert envs.observation_space.contains(obs), "reset"
        for _ in range(4):
            obs, reward, terminated, truncated, info = envs.step(np.tile([0.0, 0.5], (2, 1)).astype(np.float32))
            assert envs.observation_space.contains(obs), "step"
            assert np.isfinite(reward).all()
        assert obs["semantic"].any()
        envs.close()
        print("stepped")
    """)
    assert result.returncode == 0 and "stepped" in result.stdout, result.stderr[-3000:]


@pytest.mark.timeout(120)
def test_renderer_built_in_the_parent_renders_in_a_forked_child():
    result = run_python("""
        import multiprocessing as mp
        import numpy as np
        from carla_gym.sim import make_backend

        def child(b, q):
            q.put(b.reset(seed=2).semantic)

        b = make_backend("embedded", size=(32, 64), vehicles=0, pedestrians=0)  # no GL yet
        q = mp.get_context("fork").Queue()
        p = mp.get_context("fork").Process(target=child, args=(b, q))
        p.start()
        from_child = q.get(timeout=60)
        p.join(30)
        assert p.exitcode == 0, p.exitcode
        assert np.array_equal(from_child, b.reset(seed=2).semantic)
        b.close()
        print("same frame")
    """)
    assert result.returncode == 0 and "same frame" in result.stdout, result.stderr[-3000:]


@pytest.mark.timeout(120)
def test_gl_used_before_a_fork_fails_at_once_in_the_child():
    # Mesa's display state does not survive a fork: a new context would hang on its first read.
    result = run_python("""
        import multiprocessing as mp
        from carla_gym.sim import make_backend
        from carla_gym.sim.embedded.renderer import RenderError

        def child(b, q):
            try:
                b.reset(seed=2)
                q.put("rendered")
            except RenderError as err:
                q.put(str(err))

        b = make_backend("embedded", size=(32, 64), vehicles=0, pedestrians=0)
        b.reset(seed=1)
        q = mp.get_context("fork").Queue()
        p = mp.get_context("fork").Process(target=child, args=(b, q))
        p.start()
        print(q.get(timeout=30))
        p.join(30)
        b.reset(seed=3)  # the parent's own context still works
    """)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OpenGL was already used in process" in result.stdout and "forkserver" in result.stdout


def test_unusable_gl_context_fails_on_the_first_frame(monkeypatch):
    import moderngl

    def broken(*args, **kwargs):
        raise Exception("eglGetDisplay failed")

    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    with make_backend("embedded", size=(32, 64), vehicles=0, pedestrians=0) as b:  # no GL needed yet
        with pytest.raises(RenderError, match="eglGetDisplay failed.*libegl1"):
            b.reset(seed=0)


def test_context_of_another_process_is_dropped_unreleased_and_rebuilt():
    with make_backend("embedded", size=(32, 64), vehicles=0, pedestrians=0) as b:
        assert b.renderer.ctx is None  # nothing made before the first frame
        frame = b.reset(seed=4)
        r = b.renderer
        old = r.ctx
        r._pid = -1  # as if made in another process
        again = r.render(frame.camera_to_world, {})
        assert r.ctx is not old and r._pid == os.getpid()
        assert type(old.mglo).__name__ != "InvalidObject"  # not released through the other process's context
        old.release()
        for a, b_ in zip(again, (frame.rgb, frame.semantic, frame.depth), strict=False):  # same weather, same image
            np.testing.assert_array_equal(a, b_)


# -- threads -------------------------------------------------------------------------------------
def _report_threads(q) -> None:
    import torch

    capped = cap_threads_in_worker()
    q.put((capped, torch.get_num_threads()))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("omp, expected", [(None, (True, 1)), ("2", (False, 2))])
def test_cap_threads_in_worker(monkeypatch, omp, expected):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert cap_threads_in_worker() is False and torch.get_num_threads() == 2  # the main process is left alone
        if omp is None:
            monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
            monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
        else:
            monkeypatch.setenv("OMP_NUM_THREADS", omp)
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_report_threads, args=(q,))
        p.start()
        assert q.get(timeout=30) == expected
        p.join(10)
    finally:
        torch.set_num_threads(threads)


def test_cap_threads_rejects_zero():
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        cap_threads_in_worker(0)
