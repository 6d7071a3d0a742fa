"""The reward's terms by hand, its two speed terms, and the `--reward-*` flags of the agent trainers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import make_frame

from agents.train_ppo import build_parser
from agents.training import env_config, policy_metadata
from carla_gym.env import RewardConfig
from carla_gym.env.reward import reward_terms
from carla_gym.sim import Hazards


@pytest.mark.parametrize(
    "speed, hazards, bonus, penalty",
    [
        (8.0, Hazards(), 0.2, 0.0),  # at the cruise target: tracking 1
        (4.0, Hazards(), 0.1, -0.1),  # half the target: tracking 1 - 4/8 = 0.5
        (0.0, Hazards(), 0.0, -0.2),  # standing on a free road: tracking 0
        (0.0, Hazards(red_light=5.0), 0.2, 0.0),  # waiting at the stop line: the target is 0
        (14.0, Hazards(lead=15.0), -0.05, -0.25),  # target (15 - 5) / 20 x 8 = 4 m/s: tracking 1 - 10/8 = -0.25
    ],
)
def test_speed_term_bonus_and_penalty(speed: float, hazards: Hazards, bonus: float, penalty: float) -> None:
    frame = dataclasses.replace(make_frame(0), speed=speed, hazards=hazards)
    for form, expected in (("bonus", bonus), ("penalty", penalty)):
        terms = reward_terms(frame, 0.8, 0.5, 0.1, RewardConfig.roach(speed_term=form))
        assert terms["speed"] == pytest.approx(expected)
        assert terms["progress"] == pytest.approx(0.08)  # Roach's 0.1 per metre
        assert terms["lateral"] == pytest.approx(-0.05) and terms["heading"] == pytest.approx(-0.02)


def test_penalty_form_pays_only_for_progress() -> None:
    """With the penalty form no step pays more than its route progress, whatever the speed."""
    config = RewardConfig.roach(speed_term="penalty")
    for speed in (0.0, 2.0, 8.0, 14.0):
        frame = dataclasses.replace(make_frame(0), speed=speed)
        assert sum(reward_terms(frame, 0.5, 0.0, 0.0, config).values()) <= 0.1 * 0.5 + 1e-9


def test_default_reward_pays_progress_only_and_charges_every_bad_ending() -> None:
    config = RewardConfig()
    for speed in (0.0, 4.0, 8.0):  # standing, crawling or cruising: the metres gained are what pays
        frame = dataclasses.replace(make_frame(0), speed=speed)
        terms = reward_terms(frame, 0.5, 2.0, 0.3, config)
        assert sum(terms.values()) == pytest.approx(0.5) and terms["progress"] == pytest.approx(0.5)
    assert config.off_route > 0 and config.blocked > 0 and config.collision > 0 and config.off_road > 0
    assert RewardConfig.roach() == RewardConfig(
        progress=0.1, speed=0.2, lateral=0.1, heading=0.2, off_route=0.0, blocked=0.0
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"speed_term": "speedy"}, "RewardConfig.speed_term must be one of"),
        ({"cruise_speed": 0.0}, "RewardConfig.cruise_speed must be > 0"),
        ({"slowdown_distance": -1.0}, "RewardConfig.slowdown_distance must be > 0"),
    ],
)
def test_bad_reward_config_names_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RewardConfig(**kwargs)


def test_reward_flags_reach_the_env_and_the_policy_metadata() -> None:
    args = build_parser().parse_args(
        ["--perception", "ground_truth", "--reward-speed-term", "penalty", "--reward-collision", "20"]
    )
    reward = env_config(args, "train").reward
    assert reward == RewardConfig(speed_term="penalty", collision=20.0)
    assert policy_metadata(args, (40, 80), "cmd")["reward"] == reward.as_dict()
    assert env_config(build_parser().parse_args([]), "train").reward == RewardConfig()  # no flag: the defaults


def test_bad_reward_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from agents.train_ppo import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--reward-speed-term", "fast", "--timesteps", "1"])
    assert exit_info.value.code == 2
    assert "RewardConfig.speed_term must be one of ('bonus', 'penalty'), got 'fast'" in capsys.readouterr().err


class StandingSim:
    """A simulator whose ego stands still, one frame per tick, with `hazards` ahead (default: a free road)."""

    fixed_delta_seconds = 0.1

    def __init__(self, hazards: Hazards | None = None) -> None:
        self.hazards = hazards or Hazards()

    def reset(self, seed, options=None):
        self.tick = 0
        return dataclasses.replace(make_frame(0), speed=0.0, hazards=self.hazards)

    def step(self, control):
        self.tick += 1
        return dataclasses.replace(make_frame(self.tick), speed=0.0, hazards=self.hazards)


@pytest.mark.parametrize(
    "task_kwargs, ending",
    [
        (dict(blocked_seconds=0.1, max_route_offset=1e9), "blocked"),  # one still tick of 0.1 s
        (dict(blocked_seconds=10.0, max_route_offset=-1.0), "off_route"),  # any offset is too far
    ],
)
@pytest.mark.parametrize("penalty", [0.0, 10.0])
def test_ending_by_leaving_the_route_or_standing_blocked_costs_its_penalty(task_kwargs, ending, penalty):
    from carla_gym.env.task import DrivingTask

    config = RewardConfig(off_route=penalty, blocked=penalty)
    task = DrivingTask(StandingSim(), config, **task_kwargs)
    task.reset(seed=0)
    result = task.step(np.zeros(2, np.float32))
    assert result.terminated and result.info["termination"] == ending
    terms = result.info["reward_terms"]
    assert terms[ending] == -penalty
    assert terms["off_route" if ending == "blocked" else "blocked"] == 0.0
    assert result.reward == pytest.approx(sum(terms.values()))


@pytest.mark.parametrize(
    "hazards, blocked",
    [
        (Hazards(), True),  # a free road: nothing to wait for
        (Hazards(red_light=6.5), False),  # stopped 1.5 m short of where the speed target reaches 0
        (Hazards(red_light=24.0), False),  # within stop_margin + slowdown_distance (5 + 20 m)
        (Hazards(red_light=26.0), True),  # beyond it
        (Hazards(lead=8.0), False),  # queued behind a vehicle
    ],
)
def test_standing_still_is_blocked_only_with_nothing_to_wait_for(hazards: Hazards, blocked: bool) -> None:
    from carla_gym.env.task import DrivingTask

    task = DrivingTask(StandingSim(hazards), RewardConfig(), blocked_seconds=1.0, max_route_offset=1e9)
    task.reset(seed=0)
    endings = [task.step(np.zeros(2, np.float32)).info["termination"] for _ in range(10)]
    assert endings[-1] == ("blocked" if blocked else None)
    assert endings[:-1] == [None] * 9  # 10 still ticks of 0.1 s
