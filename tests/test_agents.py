"""Agents end to end on tiny runs: PPO (train, checkpoint, resume, reload, evaluate), imitation, logging."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import asdict, replace
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import FloatSchedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import agents
import carla_gym
from agents import cloning, evaluate, imitation, train_ppo, training
from agents.cloning import ObservationChunks
from agents.features import PerceptionExtractor
from agents.hyperparams.ppo import learning_rate_schedule
from agents.imitation_checkpoint import settings_differences
from agents.learning_curves import read_scalars
from agents.training import latest_checkpoint
from carla_gym.env import EmergencyBrakeConfig, observation_space
from carla_gym.env.contracts import controls_to_actions
from carla_gym.env.road_user_gaps import RoadUserGapConfig

TINY = [
    "--n-envs",
    "1",
    "--perception",
    "ground_truth",
    "--camera-size",
    "64",
    "128",
    "--n-steps",
    "64",
    "--batch-size",
    "32",
    "--n-epochs",
    "1",
    "--eval-freq",
    "0",
    "--save-freq",
    "64",
]


def test_extractor_output_size_and_gradients():
    space = observation_space((40, 80))
    extractor = PerceptionExtractor(space, features_dim=32)
    obs = {k: torch.as_tensor(np.stack([v.sample() for _ in range(3)])).float() for k, v in space.spaces.items()}
    out = extractor(obs)
    assert out.shape == (3, 32)
    out.sum().backward()
    assert all(p.grad is not None for p in extractor.parameters())


@pytest.mark.parametrize("stacked", [1, 3])
def test_extractor_without_the_last_action_does_not_see_it(stacked):
    space = observation_space((40, 80))
    state = space["state"]
    space = gym.spaces.Dict(
        {**space.spaces, "state": gym.spaces.Box(np.tile(state.low, stacked), np.tile(state.high, stacked))}
    )
    obs = {k: torch.as_tensor(np.stack([v.sample() for _ in range(2)])).float() for k, v in space.spaces.items()}
    last_action_moved = {**obs, "state": obs["state"].clone()}
    last_action_moved["state"][:, [7 * (stacked - 1) + 1, 7 * (stacked - 1) + 2]] += 0.5  # the newest copy's
    speed_moved = {**obs, "state": obs["state"].clone()}
    speed_moved["state"][:, 0] += 0.5
    blind, seeing = PerceptionExtractor(space, last_action=False), PerceptionExtractor(space)
    assert torch.equal(blind(obs), blind(last_action_moved))
    assert not torch.equal(blind(obs), blind(speed_moved))
    assert not torch.equal(seeing(obs), seeing(last_action_moved))


def test_tiny_ppo_trains_resumes_reloads_and_evaluates(tmp_path, capsys):
    out = tmp_path / "ppo"
    assert train_ppo.main(["--timesteps", "128", "--out", str(out), *TINY]) == 0
    assert latest_checkpoint(out / "checkpoints").name == "ppo_128_steps.zip"
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    first_seconds = agents.load_policy(out / "final_policy").metadata["train_seconds"]
    assert train_ppo.main(["--timesteps", "192", "--out", str(out), "--resume", *TINY]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert latest_checkpoint(out / "checkpoints").name == "ppo_192_steps.zip"  # the end of a run can be resumed
    metadata = agents.load_policy(out / "final_policy").metadata
    assert metadata["num_timesteps"] == 192 and metadata["perception"] == "ground_truth"
    assert metadata["train_seconds"] > first_seconds > 0  # the leaderboard rows' training cost, over both runs
    assert metadata["camera_size"] == [64, 128] and metadata["obs_size"] == [40, 80]
    assert metadata["command"].startswith("python -m agents.train_ppo --timesteps 192")
    assert not list(out.glob("*.zip"))  # nothing outside checkpoints/ needs unpickling
    report = tmp_path / "eval.json"
    assert (
        evaluate.main(
            [
                str(out / "final_policy"),
                "--episodes",
                "2",
                "--perception",
                "ground_truth",
                "--camera-size",
                "64",
                "128",
                "--max-steps",
                "20",
                "--out",
                str(report),
            ]
        )
        == 0
    )
    summary = json.loads(report.read_text())
    assert summary["episodes"] == 2 and len(summary["episodes_detail"]) == 2
    assert 0.0 <= summary["driving_score"] <= summary["route_completion"] <= 1.0
    assert summary["camera_size"] == [64, 128]


def test_ctrl_c_saves_a_checkpoint_that_resume_goes_on_from(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ppo"

    def ctrl_c_at_step_96(self):
        if self.num_timesteps >= 96:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr(training.DrivingInfoCallback, "_on_step", ctrl_c_at_step_96)
    assert train_ppo.main(["--timesteps", "192", "--learning-rate", "lin_3e-4", "--out", str(out), *TINY]) == 130
    monkeypatch.undo()
    assert "interrupted at step 96" in capsys.readouterr().err
    assert latest_checkpoint(out / "checkpoints").name == "ppo_96_steps.zip"  # --save-freq 64 wrote ppo_64 only
    assert not (out / "final_policy").exists()
    assert train_ppo.main(["--timesteps", "192", "--out", str(out), "--resume", *TINY]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert agents.load_policy(out / "final_policy").metadata["num_timesteps"] >= 192  # whole 64-step rollouts from 96
    # a linear learning rate falls from 3e-4 over the whole run, across the resume:
    # updates at steps 64 (before Ctrl-C), 160 and 224 (past the end: 0) of 192
    _, steps, rates = read_scalars(out, ["train/learning_rate"])
    assert steps == [64, 160, 224]
    assert rates == pytest.approx([3e-4 * (1 - 64 / 192), 3e-4 * (1 - 160 / 192), 0.0])


def test_evaluate_names_a_missing_policy(tmp_path):
    with pytest.raises(SystemExit) as err:
        evaluate.main([str(tmp_path / "nope.zip"), "--episodes", "1"])
    assert err.value.code == 2


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(SystemExit) as err:
        train_ppo.main(["--timesteps", "64", "--out", str(tmp_path / "empty"), "--resume", *TINY])
    assert err.value.code == 2


def test_two_worlds_train_through_make_vec_and_evaluate_on_one(tmp_path, recwarn):
    out = tmp_path / "ppo2"
    args = list(TINY)
    args[args.index("--n-envs") + 1] = "2"
    args[args.index("--eval-freq") + 1] = "64"
    assert (
        train_ppo.main(["--timesteps", "128", "--eval-episodes", "1", "--max-steps", "30", "--out", str(out), *args])
        == 0
    )
    assert agents.load_policy(out / "final_policy").metadata["num_timesteps"] == 128
    best = agents.load_policy(out / "best_policy").metadata  # the evaluation ran
    evaluations = np.load(out / "eval" / "evaluations.npz")
    assert best["val_mean_reward"] == pytest.approx(evaluations["results"].mean(axis=1).max())
    # resumed, the run keeps that best policy until an evaluation beats its reward
    resumed = train_ppo.build_parser().parse_args([*args, "--out", str(out), "--resume", "--eval-episodes", "1"])
    evaluation, eval_env = train_ppo.evaluation_callback(resumed, {}, resumed=True)
    eval_env.close()
    assert evaluation.best_mean_reward == best["val_mean_reward"]
    assert evaluation.evaluations_timesteps == [64, 128]  # so that evaluations.npz keeps them
    other = EvalCallback(eval_env)
    train_ppo.keep_evaluations(other, out / "eval" / "evaluations.npz", episodes=3)
    assert other.evaluations_timesteps == []  # 3 episodes each: a new file (SB3 cannot mix sizes)
    assert not [w for w in recwarn if "not of the same type" in str(w.message)]  # SB3's EvalCallback check


def test_driving_callback_logs_how_episodes_ended():
    callback = training.DrivingInfoCallback()
    callback.model = SimpleNamespace(logger=Logger(folder=None, output_formats=[]))
    infractions = {"collision_vehicle": 1, "lane_invasion": 0}
    callback.locals = {
        "dones": [True, False, True, True],
        "infos": [
            {"route_completion": 0.5, "distance": 100.0, "infractions": infractions, "termination": "collision"},
            {},  # still running: not logged
            {"route_completion": 1.0, "distance": 200.0, "infractions": infractions, "termination": "route_completed"},
            {"route_completion": 0.0, "distance": 0.0, "infractions": infractions, "TimeLimit.truncated": True},
        ],
    }
    assert callback._on_step()
    logged = callback.model.logger.name_to_value
    assert logged["driving/route_completion"] == pytest.approx(0.5)
    assert logged["driving/ended_by_collision"] == pytest.approx(1 / 3)
    assert logged["driving/ended_by_route_completed"] == pytest.approx(1 / 3)
    assert logged["driving/ended_by_time_limit"] == pytest.approx(1 / 3)
    assert logged["driving/ended_by_blocked"] == 0.0


def test_init_from_copies_the_policy_weights(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert train_ppo.main(["--timesteps", "64", "--out", str(first), *TINY]) == 0
    assert (
        train_ppo.main(
            [
                "--timesteps",
                "64",
                "--out",
                str(second),
                "--init-from",
                str(first / "final_policy"),
                "--learning-rate",
                "0",
                "--log-std-init",
                "-3.5",
                *TINY,
            ]
        )
        == 0
    )
    a = agents.load_policy(first / "final_policy").policy.state_dict()
    b = agents.load_policy(second / "final_policy").policy.state_dict()
    assert a["log_std"].mean() != -3.5 and torch.all(b["log_std"] == -3.5)  # the exploration noise was reset
    assert all(
        torch.equal(a[k], b[k]) for k in a if k != "log_std"
    )  # learning rate 0: copied weights stay as they were
    with pytest.raises(SystemExit) as err:
        train_ppo.main(
            ["--timesteps", "64", "--out", str(tmp_path / "x"), "--init-from", str(tmp_path / "nope"), *TINY]
        )
    assert err.value.code == 2
    checkpoint = next((first / "checkpoints").glob("*.zip"))
    with pytest.raises(SystemExit) as err:  # an SB3 .zip is unpickled: only with --trust-pickle
        train_ppo.main(["--timesteps", "64", "--out", str(tmp_path / "x"), "--init-from", str(checkpoint), *TINY])
    assert err.value.code == 2 and not (tmp_path / "x").exists()
    assert (
        train_ppo.main(
            [
                "--timesteps",
                "64",
                "--out",
                str(tmp_path / "y"),
                "--init-from",
                str(checkpoint),
                "--trust-pickle",
                "--learning-rate",
                "0",
                *TINY,
            ]
        )
        == 0
    )
    c = agents.load_policy(tmp_path / "y" / "final_policy").policy.state_dict()
    assert all(torch.equal(a[k], c[k]) for k in a)


IMITATION_TINY = [
    "--timesteps",
    "64",
    "--rounds",
    "2",
    "--epochs",
    "1",
    "--n-envs",
    "2",
    "--perception",
    "ground_truth",
    "--camera-size",
    "64",
    "128",
    "--max-steps",
    "30",
]


def test_imitation_fits_the_autopilot_and_hands_over_to_ppo(tmp_path):
    out = tmp_path / "bc"
    assert imitation.main([*IMITATION_TINY, "--timesteps", "96", "--out", str(out)]) == 0
    assert (
        imitation.main(
            [
                "--steps",  # the deprecated spelling still works
                "48",
                "--rounds",
                "1",
                "--epochs",
                "1",
                "--n-envs",
                "2",
                "--perception",
                "ground_truth",
                "--camera-size",
                "64",
                "128",
                "--out",
                str(tmp_path / "bc2"),
                "--init-from",
                str(out / "bc_policy"),
            ]
        )
        == 0
    )
    assert agents.load_policy(tmp_path / "bc2" / "bc_policy").metadata["perception"] == "ground_truth"
    assert agents.load_policy(out / "bc_policy").metadata["num_timesteps"] == 96
    from agents.learning_curves import read_scalars

    # route completion per round against env steps: 2 rounds of 48 steps
    assert read_scalars(out)[:2] == ("driving/route_completion", [48, 96])
    assert (
        train_ppo.main(
            [
                "--timesteps",
                "64",
                "--out",
                str(tmp_path / "ppo"),
                "--init-from",
                str(tmp_path / "bc2" / "bc_policy"),
                *TINY,
            ]
        )
        == 0
    )


def test_frame_stack_runs_through_imitation_ppo_and_evaluation(tmp_path, capsys):
    out = tmp_path / "bc"
    assert imitation.main([*IMITATION_TINY, "--frame-stack", "3", "--out", str(out)]) == 0
    policy = agents.load_policy(out / "bc_policy")
    assert policy.frame_stack == 3
    # three observations end to end: 6 semantic groups + 1 depth channel each, 7 state values each
    assert policy.observation_space["semantic"].shape == (18, 40, 80)
    assert policy.observation_space["state"].shape == (21,)
    ppo_args = ["--timesteps", "64", "--out", str(tmp_path / "ppo"), "--init-from", str(out / "bc_policy"), *TINY]
    assert train_ppo.main([*ppo_args, "--frame-stack", "3"]) == 0
    assert agents.load_policy(tmp_path / "ppo" / "final_policy").frame_stack == 3
    with pytest.raises(SystemExit) as err:  # the policy takes three frames: a run with one is refused
        train_ppo.main([*ppo_args[:3], str(tmp_path / "ppo1"), *ppo_args[4:]])
    assert err.value.code == 2 and "spaces differ" in capsys.readouterr().err
    report = tmp_path / "eval.json"
    eval_args = ["--episodes", "1", "--perception", "ground_truth", "--camera-size", "64", "128", "--max-steps", "10"]
    assert evaluate.main([str(tmp_path / "ppo" / "final_policy"), *eval_args, "--out", str(report)]) == 0
    assert json.loads(report.read_text())["episodes"] == 1


def test_no_last_action_is_kept_in_the_saved_policy_through_ppo(tmp_path, capsys):
    out = tmp_path / "bc"
    assert imitation.main([*IMITATION_TINY, "--no-last-action", "--out", str(out)]) == 0
    policy = agents.load_policy(out / "bc_policy")
    assert json.loads((out / "bc_policy" / "policy.json").read_text())["policy_kwargs"][
        "features_extractor_kwargs"
    ] == {"last_action": False}
    obs = {k: np.stack([v.sample() for _ in range(4)]) for k, v in policy.observation_space.spaces.items()}
    moved = {**obs, "state": obs["state"].copy()}
    moved["state"][:, 1:3] = -moved["state"][:, 1:3]
    assert np.array_equal(policy.predict(obs, deterministic=True)[0], policy.predict(moved, deterministic=True)[0])
    ppo_args = ["--timesteps", "64", "--out", str(tmp_path / "ppo"), *TINY, "--no-last-action"]
    assert train_ppo.main(ppo_args) == 0
    assert not agents.load_policy(tmp_path / "ppo" / "final_policy").policy.features_extractor.state_mask[1:3].any()
    with pytest.raises(SystemExit) as err:  # a policy that never saw its last action is not continued as one that does
        train_ppo.main([*ppo_args[:-1], "--out", str(tmp_path / "ppo2"), "--init-from", str(out / "bc_policy")])
    assert err.value.code == 2 and "--no-last-action" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value, at_start, halfway", [(3e-4, 3e-4, 3e-4), ("1e-3", 1e-3, 1e-3), ("lin_3e-4", 3e-4, 1.5e-4)]
)
def test_learning_rate_is_a_constant_or_a_linear_schedule_as_the_zoo_writes_it(value, at_start, halfway):
    schedule = FloatSchedule(learning_rate_schedule(value))  # SB3's progress_remaining: 1 at the start
    assert schedule(1.0) == pytest.approx(at_start)
    assert schedule(0.5) == pytest.approx(halfway)


@pytest.mark.parametrize("value", ["fast", "-3e-4", "lin_", "lin_-1", "lin_x", "nan"])
def test_a_bad_learning_rate_is_refused_by_name(value, capsys):
    with pytest.raises(ValueError, match=f"learning rate '{value}'"):
        learning_rate_schedule(value)
    with pytest.raises(SystemExit) as err:
        train_ppo.build_parser().parse_args([f"--learning-rate={value}"])
    assert err.value.code == 2
    assert f"--learning-rate: learning rate '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("flags, terminate", [([], False), (["--terminate-red-light"], True)])
def test_terminate_red_light_reaches_the_training_worlds_and_the_policy_record(flags, terminate):
    args = train_ppo.build_parser().parse_args(["--perception", "ground_truth", *flags])
    assert training.env_config(args, "train").terminate_red_light is terminate
    assert training.policy_metadata(args, (40, 80), "cmd")["terminate_red_light"] is terminate


@pytest.mark.parametrize("parser", [train_ppo.build_parser, imitation.build_parser])
@pytest.mark.parametrize("flags, share", [([], 0.0), (["--pedestrian-crossings", "0.3"], 0.3)])
def test_pedestrian_crossings_reach_the_training_worlds_not_the_validation_ones(parser, flags, share):
    args = parser().parse_args(["--perception", "ground_truth", *flags])
    assert training.env_config(args, "train").pedestrian_crossings == share
    assert training.env_config(args, "val").pedestrian_crossings == 0.0
    assert training.policy_metadata(args, (40, 80), "cmd")["pedestrian_crossings"] == share


@pytest.mark.parametrize("parser", [train_ppo.build_parser, imitation.build_parser])
@pytest.mark.parametrize("flags, distance", [([], [10.0, 40.0]), (["--crossing-distance", "5", "15"], [5.0, 15.0])])
def test_crossing_distance_reaches_the_training_worlds_and_the_policy_record(parser, flags, distance):
    args = parser().parse_args(["--perception", "ground_truth", "--pedestrian-crossings", "0.3", *flags])
    assert training.env_config(args, "train").crossing_distance_m == tuple(distance)
    assert training.policy_metadata(args, (40, 80), "cmd")["crossing_distance_m"] == distance


@pytest.mark.parametrize("parser", [train_ppo.build_parser, imitation.build_parser])
@pytest.mark.parametrize("flags, on", [([], False), (["--road-user-gaps"], True)])
def test_road_user_gaps_flag_reaches_every_world_and_the_policy_record(parser, flags, on):
    args = parser().parse_args(["--perception", "ground_truth", *flags])
    assert training.env_config(args, "train").road_user_gaps is on
    assert training.env_config(args, "val").road_user_gaps is on  # the observation space is the same in evaluation
    assert training.policy_metadata(args, (40, 80), "cmd")["road_user_gaps"] is on


PEDESTRIANS = EmergencyBrakeConfig(groups=("pedestrian",))


@pytest.mark.parametrize("parser", [train_ppo.build_parser, imitation.build_parser])
@pytest.mark.parametrize(
    "flags, brake",
    [
        ([], None),
        (["--emergency-brake"], EmergencyBrakeConfig()),
        (["--emergency-brake", "pedestrian"], PEDESTRIANS),
        (
            ["--emergency-brake", "min_height_m=0.3", "pedestrian"],
            replace(PEDESTRIANS, gaps=RoadUserGapConfig(half_width_m=1.2, min_cells=2, min_height_m=0.3)),
        ),
    ],
)
def test_emergency_brake_flag_reaches_every_world_and_the_policy_record(parser, flags, brake):
    args = parser().parse_args(["--perception", "ground_truth", *flags])
    assert training.env_config(args, "train").emergency_brake == brake
    assert training.env_config(args, "val").emergency_brake == brake  # the policy is evaluated as it trains
    recorded = training.policy_metadata(args, (40, 80), "cmd")["emergency_brake"]
    assert recorded == (None if brake is None else asdict(brake))  # every option, not the flag's shorthand


@pytest.mark.parametrize(
    "values, message",
    [(["15", "5"], "must not exceed the second, got 15 5"), (["0", "5"], "must be a finite number > 0"), (["5"], "")],
)
def test_crossing_distance_must_be_an_ascending_pair_of_metres(values, message, capsys):
    with pytest.raises(SystemExit) as err:
        imitation.build_parser().parse_args(["--crossing-distance", *values])
    assert err.value.code == 2
    assert "--crossing-distance" in (text := capsys.readouterr().err) and message in text


@pytest.mark.parametrize(
    "values, message",
    [
        (["pedestrain"], "'pedestrain' is neither a road user (vehicle, pedestrian) nor FIELD=VALUE"),
        (["pedestrian", "min_height=0.3"], "'min_height=0.3' is not FIELD=VALUE with a field of"),
        (["min_height_m=-1"], "min_height_m must be >= 0, got -1.0"),
    ],
)
def test_a_bad_emergency_brake_value_is_named(values, message, capsys):
    with pytest.raises(SystemExit) as err:
        imitation.build_parser().parse_args(["--emergency-brake", *values])
    assert err.value.code == 2
    assert f"argument --emergency-brake: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1.5", "-0.1", "often"])
def test_pedestrian_crossings_must_be_a_share(value, capsys):
    with pytest.raises(SystemExit) as err:
        imitation.build_parser().parse_args(["--pedestrian-crossings", value])
    assert err.value.code == 2 and "--pedestrian-crossings" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_frame_stack_must_be_a_positive_whole_number(value, capsys):
    with pytest.raises(SystemExit) as err:
        imitation.build_parser().parse_args(["--frame-stack", value])
    assert err.value.code == 2
    assert "--frame-stack" in capsys.readouterr().err


def test_imitation_resumes_a_killed_run_to_the_same_policy(tmp_path, monkeypatch, capsys):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert imitation.main([*IMITATION_TINY, "--out", str(whole)]) == 0
    drive, calls = imitation.drive, []

    def killed_in_round_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return drive(*args, **kwargs)

    monkeypatch.setattr(imitation, "drive", killed_in_round_2)  # Ctrl-C in round 2
    assert imitation.main([*IMITATION_TINY, "--out", str(killed)]) == 130
    monkeypatch.undo()
    assert "interrupted in round 2/2: 1 rounds are checkpointed" in capsys.readouterr().err
    state = json.loads((killed / "checkpoints" / "state.json").read_text())
    assert (state["rounds_done"], state["env_steps"]) == (1, 32)
    with pytest.raises(SystemExit):  # a new run would overwrite it
        imitation.main([*IMITATION_TINY, "--out", str(killed)])
    assert "pass --resume" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        imitation.main([*IMITATION_TINY, "--out", str(killed), "--resume", "--epochs", "2"])
    assert "epochs: 1 in the checkpoint, 2 now" in capsys.readouterr().err

    assert imitation.main([*IMITATION_TINY, "--out", str(killed), "--resume"]) == 0
    assert "resuming after round 1/2 (32 env steps)" in capsys.readouterr().out
    resumed, uninterrupted = (agents.load_policy(d / "bc_policy") for d in (killed, whole))
    assert resumed.metadata["num_timesteps"] == 64 and "--resume" not in resumed.metadata["command"]
    a, b = resumed.policy.state_dict(), uninterrupted.policy.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # the same episodes, labels and fits
    assert sorted(p.name for p in (killed / "checkpoints").glob("policy_*.pt")) == ["policy_2.pt"]


def test_final_epochs_fit_after_the_rounds_and_a_finished_run_resumes_into_them(tmp_path, capsys):
    plain, direct = tmp_path / "plain", tmp_path / "direct"
    assert imitation.main([*IMITATION_TINY, "--out", str(plain)]) == 0
    assert imitation.main([*IMITATION_TINY, "--out", str(direct), "--final-epochs", "3"]) == 0
    assert "final fit, 3 passes over all labels" in capsys.readouterr().out
    # the rounds are the same, so a finished run resumed with --final-epochs ends where one run with it ends
    assert imitation.main([*IMITATION_TINY, "--out", str(plain), "--resume", "--final-epochs", "3"]) == 0
    polished, whole = (agents.load_policy(d / "bc_policy") for d in (plain, direct))
    a, b = polished.policy.state_dict(), whole.policy.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert polished.metadata["command"].endswith("--final-epochs 3")
    rounds_only = torch.load(plain / "checkpoints" / "policy_2.pt", weights_only=True)["policy"]
    assert not torch.allclose(rounds_only["action_net.weight"], a["action_net.weight"])


@pytest.mark.parametrize(
    "now, differences",
    [
        ({"epochs": 1, "frame_stack": 1}, []),  # an option added since the checkpoint, at its default
        ({"epochs": 1, "frame_stack": 3}, ["frame_stack: None in the checkpoint, 3 now"]),
        ({"epochs": 2, "frame_stack": 1}, ["epochs: 1 in the checkpoint, 2 now"]),
    ],
)
def test_a_dagger_checkpoint_from_before_an_option_resumes_at_its_default(now, differences):
    assert settings_differences({"epochs": 1}, now, defaults={"epochs": 1, "frame_stack": 1}) == differences


def test_observation_chunks_index_like_their_concatenation():
    rounds = [
        {"speed": np.array([0, 10, 20]), "xy": np.arange(6).reshape(3, 2)},
        {"speed": np.array([30, 40]), "xy": np.arange(6, 10).reshape(2, 2)},
    ]
    joined = ObservationChunks(rounds)
    assert len(joined) == 5
    taken = joined.take(np.array([1, 2, 4]))  # across the seam between the two rounds
    np.testing.assert_array_equal(taken["speed"], [10, 20, 40])
    np.testing.assert_array_equal(taken["xy"], [[2, 3], [4, 5], [8, 9]])
    np.testing.assert_array_equal(joined.take(np.array([3]))["speed"], [30])


def test_dagger_fits_all_rounds_without_copying_them():
    space = observation_space((40, 80))
    space.seed(0)
    data = [
        (
            {k: np.stack([v.sample() for _ in range(256)]) for k, v in space.spaces.items()},
            np.zeros((256, 2), np.float32),
            np.zeros(256, np.float32),
        )
        for _ in range(4)  # four DAgger rounds: observations, labels, returns
    ]
    held = sum(a.nbytes for obs, _, _ in data for a in obs.values())
    model = training.new_model(DummyVecEnv([lambda: _SpaceOnlyEnv(space)]), seed=0, verbose=0)
    tracemalloc.start()
    imitation.fit_all(model, data, epochs=1, batch_size=64)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < held / 4  # minibatches only; concatenating the rounds would allocate `held` again


def test_behaviour_cloning_loss_decreases_on_a_fixed_batch():
    space = observation_space((40, 80))
    space.seed(0)
    rng = np.random.default_rng(0)
    obs = {k: np.stack([v.sample() for _ in range(64)]) for k, v in space.spaces.items()}
    labels = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    returns = rng.normal(5.0, 1.0, 64).astype(np.float32)
    env = DummyVecEnv([lambda: _SpaceOnlyEnv(space)])
    model = training.new_model(env, seed=0, verbose=0)
    first, _ = imitation.fit(model, obs, labels, returns, epochs=1, batch_size=64)
    last, value_loss = imitation.fit(model, obs, labels, returns, epochs=60, batch_size=64)
    assert last < 0.5 * first
    assert value_loss < 25.0 / 2  # the value head moved from ~0 towards returns of ~5


@pytest.mark.parametrize(
    ("acceleration", "brake_weight", "expected"),
    [(0.6, 5.0, 1.0), (0.0, 5.0, 1.0), (-0.25, 5.0, 2.0), (-1.0, 5.0, 5.0), (-1.0, 1.0, 1.0), (-0.5, 0.5, 0.75)],
)
def test_label_weights_rise_with_the_brake(acceleration: float, brake_weight: float, expected: float) -> None:
    labels = np.array([[0.3, acceleration]], np.float32)
    assert cloning.label_weights(labels, brake_weight)[0] == pytest.approx(expected)


def test_label_weights_refuse_a_weight_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="brake_weight must be positive, got 0"):
        cloning.label_weights(np.zeros((1, 2), np.float32), 0.0)


def test_a_brake_weight_fits_the_braking_labels_closer():
    """Labels the policy cannot all fit (the same observation, cruising in 15 of 16 and braking in one): the
    weighted fit moves the mean action towards the rare full brake."""
    space = observation_space((40, 80))
    space.seed(0)
    one = {k: v.sample() for k, v in space.spaces.items()}
    obs = {k: np.stack([v] * 64) for k, v in one.items()}
    labels = np.tile(np.array([[0.0, 0.5]], np.float32), (64, 1))
    labels[::16, 1] = -1.0
    env = DummyVecEnv([lambda: _SpaceOnlyEnv(space)])
    means = []
    for brake_weight in (1.0, 10.0):
        model = training.new_model(env, seed=0, verbose=0)
        imitation.fit(model, obs, labels, None, epochs=150, batch_size=64, brake_weight=brake_weight)
        means.append(model.predict(one, deterministic=True)[0][1])
    # the weighted mean of the labels: 0.5 - 1.5 / 16 unweighted, 0.5 - 1.5 x 10 / 25 with weight 10
    assert means[0] == pytest.approx(0.5 - 1.5 / 16, abs=0.05)
    assert means[1] == pytest.approx(0.5 - 1.5 * 10 / 25, abs=0.05)


def test_swap_road_users_exchanges_vehicles_and_pedestrians_in_the_chosen_rows_of_every_stacked_copy():
    groups = len(carla_gym.env.observation.SEMANTIC_GROUPS)
    vehicle, pedestrian = cloning.ROAD_USER_CHANNELS
    semantic = np.arange(3 * 2 * groups, dtype=np.uint8).reshape(3, 2 * groups, 1, 1)  # two stacked frames
    swapped = cloning.swap_road_users(semantic, np.array([True, False, True]))
    expected = semantic.copy()
    for row in (0, 2):
        for first in (0, groups):
            expected[row, first + vehicle], expected[row, first + pedestrian] = (
                semantic[row, first + pedestrian],
                semantic[row, first + vehicle],
            )
    np.testing.assert_array_equal(swapped, expected)
    assert not np.array_equal(swapped[0], semantic[0])
    np.testing.assert_array_equal(swapped[1], semantic[1])
    np.testing.assert_array_equal(semantic, np.arange(semantic.size, dtype=np.uint8).reshape(semantic.shape))


def test_swap_road_users_names_a_shape_that_is_not_stacked_groups():
    with pytest.raises(ValueError, match=r"must be \(n, k x 6, h, w\), got shape \(2, 7, 4, 4\)"):
        cloning.swap_road_users(np.zeros((2, 7, 4, 4), np.uint8), np.array([True, False]))


def test_road_user_swap_makes_the_policy_answer_pedestrians_like_vehicles():
    """Labels that tell the two apart (a full brake for a vehicle ahead, cruising past a pedestrian in the same
    place): fitted without the swap the policy follows them, fitted with it (P = 0.5) it answers both alike."""
    space = observation_space((40, 80))
    vehicle, pedestrian = cloning.ROAD_USER_CHANNELS
    rng = np.random.default_rng(0)
    n = 128
    is_vehicle = rng.random(n) < 0.5
    obs = {k: np.zeros((n, *space[k].shape), space[k].dtype) for k in space.spaces}
    obs["semantic"][is_vehicle, vehicle, 15:30, 30:50] = 255
    obs["semantic"][~is_vehicle, pedestrian, 15:30, 30:50] = 255
    labels = np.where(is_vehicle[:, None], [[0.0, -1.0]], [[0.0, 0.5]]).astype(np.float32)
    probes = {k: np.concatenate([obs[k][is_vehicle][:1], obs[k][~is_vehicle][:1]]) for k in obs}
    env = DummyVecEnv([lambda: _SpaceOnlyEnv(space)])
    gaps = []
    for swap in (0.0, 0.5):
        model = training.new_model(env, seed=0, verbose=0)
        imitation.fit(model, obs, labels, None, epochs=40, batch_size=32, road_user_swap=swap)
        vehicle_answer, pedestrian_answer = model.predict(probes, deterministic=True)[0][:, 1]
        gaps.append(pedestrian_answer - vehicle_answer)
    assert gaps[0] > 1.0  # cruising past the pedestrian, braking for the vehicle (labels 1.5 apart)
    assert abs(gaps[1]) < 0.2


def test_fitting_the_value_leaves_the_actors_update_unchanged():
    """Returns of any scale train the critic only: the actor (shared features extractor included) ends
    where fitting the labels alone takes it."""
    space = observation_space((40, 80))
    space.seed(0)
    rng = np.random.default_rng(0)
    obs = {k: np.stack([v.sample() for _ in range(64)]) for k, v in space.spaces.items()}
    labels = rng.uniform(-1, 1, (64, 2)).astype(np.float32)
    env = DummyVecEnv([lambda: _SpaceOnlyEnv(space)])
    actors, critics = [], []
    for returns in (None, rng.normal(300.0, 100.0, 64).astype(np.float32)):
        model = training.new_model(env, seed=0, verbose=0)
        imitation.fit(model, obs, labels, returns, epochs=2, batch_size=32)
        policy = model.policy
        critic = {id(p) for p in cloning.critic_parameters(policy)}
        assert not any(id(p) in critic for p in policy.features_extractor.parameters())
        actors.append([p.detach().clone() for p in policy.parameters() if id(p) not in critic])
        critics.append([p.detach().clone() for p in policy.parameters() if id(p) in critic])
    for without, with_returns in zip(*actors, strict=True):
        torch.testing.assert_close(without, with_returns)
    assert any(not torch.equal(a, b) for a, b in zip(*critics, strict=True))  # the value head did learn


@pytest.mark.parametrize("shared", [True, False])
def test_mean_action_and_value_match_sb3s_separate_passes(shared: bool) -> None:
    """One pass of the features extractor gives SB3's deterministic action and value, shared extractor or not."""
    space = observation_space((40, 80))
    space.seed(1)
    env = DummyVecEnv([lambda: _SpaceOnlyEnv(space)])
    kwargs = {**training.policy_kwargs(training.LOG_STD_INIT), "share_features_extractor": shared}
    policy = PPO("MultiInputPolicy", env, seed=0, device="cpu", policy_kwargs=kwargs).policy
    obs = policy.obs_to_tensor({k: np.stack([v.sample() for _ in range(5)]) for k, v in space.spaces.items()})[0]
    with torch.no_grad():
        mean, value = cloning.mean_action_and_value(policy, obs)
        torch.testing.assert_close(mean, policy.get_distribution(obs).distribution.mean)
        torch.testing.assert_close(value, policy.predict_values(obs).flatten())
        assert mean.shape == (5, 2) and value.shape == (5,)


class _SpaceOnlyEnv(gym.Env):
    """Just enough of an env for PPO's constructor: its spaces (never stepped)."""

    def __init__(self, space):
        self.observation_space, self.action_space = space, gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def test_expert_labels_from_infos_match_asking_the_worlds_through_episode_ends():
    """The labels DAgger reads from the step infos are those the worlds' autopilots give when asked, also right
    after a same-step auto-reset (the label of the new episode's first observation comes from the reset info)."""
    vec = VecMonitor(
        carla_gym.make_vec(2, perception="ground_truth", expert_action=True, max_episode_steps=3, camera_size=(64, 128))
    )
    try:
        vec.seed(5)
        vec.reset()
        infos = list(vec.unwrapped.reset_infos)
        ended = 0
        for _ in range(5):
            asked = controls_to_actions(vec.env_method("autopilot_control"))
            assert np.array_equal(cloning.expert_actions(vec, infos), asked)
            _, _, dones, step_infos = vec.step(asked)
            infos = cloning.current_infos(vec, step_infos, dones)
            ended += int(dones.sum())
        assert ended == 2  # both worlds hit the time limit at step 3
    finally:
        vec.close()


def test_expert_actions_without_infos_ask_the_worlds_and_current_infos_take_resets_where_done():
    class Worlds:
        unwrapped = SimpleNamespace(reset_infos=[{"expert_action": np.array([0.5, 0.5])}, {"at": "reset 1"}])

        def env_method(self, name):
            assert name == "autopilot_control"
            return [SimpleNamespace(steer=0.1, throttle=0.7, brake=0.2)] * 2

    worlds = Worlds()
    from_infos = [{"expert_action": np.array([0.25, -1.0])}, {"expert_action": np.array([0.0, 1.0])}]
    assert cloning.expert_actions(worlds, from_infos).tolist() == [[0.25, -1.0], [0.0, 1.0]]
    # an info without the action (an env made without expert_action): the worlds are asked
    assert np.allclose(cloning.expert_actions(worlds, [from_infos[0], {}]), [[0.1, 0.5], [0.1, 0.5]])
    current = cloning.current_infos(worlds, [{"at": "step 0"}, {"at": "step 1"}], np.array([False, True]))
    assert current == [{"at": "step 0"}, {"at": "reset 1"}]
