"""PPO with an imitation phase: each PPO update is followed by behaviour cloning on the rollout's states.

Every observation of a rollout is labelled with the world's autopilot action there (DAgger labels on
the states the learner itself visits, Ross et al. 2011); after PPO's clipped update, `bc_epochs`
passes fit the policy's mean action to those labels (MSE), the way PPG (Cobbe et al. 2021) follows
its policy phase with an auxiliary phase. Reinforcement learning improves what the reward measures,
and the imitation phase keeps the policy near the expert where the reward's signal is noisy, which
stops the drift that plain PPO fine-tuning showed on model perception. The policy still sees only
the env's observation; the autopilot (privileged) is needed during training only.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback

from .cloning import current_infos, expert_actions, fit


class ExpertLabels(BaseCallback):
    """Records the autopilot's action for every observation of the current rollout, in the buffer's order."""

    def __init__(self) -> None:
        super().__init__()
        self.labels: list[np.ndarray] = []
        self._pending: np.ndarray | None = None  # the label of the observation the next step acts on

    def _on_training_start(self) -> None:
        self._pending = expert_actions(self.training_env, self.training_env.unwrapped.reset_infos)

    def _on_rollout_start(self) -> None:
        self.labels = []

    def _on_step(self) -> bool:
        # Called after env.step: the pending label belongs to the observation just acted on; the worlds
        # now stand at the next observation (after any auto-reset), which is labelled here.
        if self._pending is None:
            raise RuntimeError("ExpertLabels: no pending label; the callback was not started by learn()")
        self.labels.append(self._pending)
        infos = current_infos(self.training_env, self.locals["infos"], self.locals["dones"])
        self._pending = expert_actions(self.training_env, infos)
        return True

    def flat(self) -> np.ndarray:
        """(n_steps x n_envs, 2) labels ordered like the rollout buffer's flattened observations."""
        return RolloutBuffer.swap_and_flatten(np.stack(self.labels))


class GuidedPPO(PPO):
    """PPO whose every update ends with `bc_epochs` passes of behaviour cloning on the rollout's autopilot labels."""

    def __init__(self, *args: Any, bc_epochs: int = 1, bc_batch_size: int = 256, **kwargs: Any) -> None:
        self.bc_epochs, self.bc_batch_size = bc_epochs, bc_batch_size
        self._expert = ExpertLabels()
        super().__init__(*args, **kwargs)

    def learn(self, total_timesteps: int, callback: Any = None, **kwargs: Any) -> GuidedPPO:  # type: ignore[override]  # forwards PPO.learn's keywords
        self._expert = ExpertLabels()
        callbacks = [self._expert] + (list(callback) if isinstance(callback, list) else [callback] if callback else [])
        return super().learn(total_timesteps, callback=callbacks, **kwargs)

    def train(self) -> None:
        super().train()  # leaves the buffer's observations flattened, env by env
        if self.bc_epochs > 0 and len(self._expert.labels) == self.n_steps:
            action_mse, _ = fit(
                self,
                cast(dict[str, np.ndarray], self.rollout_buffer.observations),
                self._expert.flat(),
                None,
                self.bc_epochs,
                self.bc_batch_size,
            )
            self.logger.record("train/bc_action_mse", action_mse)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_expert"]
