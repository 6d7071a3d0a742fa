"""`benchmarks/brake_alarms.py`: its variants, and its counts on a scripted episode of five hand-built
observations (`tests.test_road_user_gaps`' 4x8 cells)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from carla_gym.env.config import EnvConfig
from carla_gym.env.emergency_brake import EmergencyBrakeConfig
from carla_gym.env.observation import STATE_SPEED_SCALE
from carla_gym.env.perception_source import bundled_weights
from perception.weights import weights_record
from tests.benchmark_scripts import load_benchmark
from tests.test_road_user_gaps import PEDESTRIAN, observation, route_at

brake_alarms = load_benchmark("brake_alarms")


def test_variants_change_the_brakes_or_its_gaps_fields():
    variants = brake_alarms.parse_variants([["h", "min_height_m=0.3", "min_cells=3"], ["veh", "groups=vehicle"]])
    assert variants["default"] == EmergencyBrakeConfig()
    assert variants["h"].gaps.min_height_m == 0.3 and variants["h"].gaps.min_cells == 3
    assert variants["h"].gaps.half_width_m == EmergencyBrakeConfig().gaps.half_width_m  # the rest kept
    assert variants["veh"].groups == ("vehicle",) and variants["veh"].gaps == EmergencyBrakeConfig().gaps


@pytest.mark.parametrize(
    "spec, message",
    [
        (["x", "min_hight_m=0.3"], "'min_hight_m=0.3' is not FIELD=VALUE with a field of"),
        (["x", "min_height_m"], "is not FIELD=VALUE"),
        (["x", "min_cells=two"], "no number for min_cells"),
        (["x", "min_height_m=-1"], "variant 'x': min_height_m must be >= 0"),
        (["x", "groups=cyclist"], "variant 'x': groups must be a non-empty subset"),
    ],
)
def test_a_bad_variant_is_named_with_its_change(spec, message):
    with pytest.raises(ValueError, match=message):
        brake_alarms.parse_variants([spec])


class ScriptedEpisode:
    """Five observations: (two pedestrian cells at this depth or none, speed m/s, the simulator's lead road user m)."""

    STEPS = [
        (5.6, 5.0, math.inf),  # on the road plane 4.85 m ahead, nothing there: a false alarm unless cells stand up
        (4.0, 3.0, 3.0),  # 0.4 m up, 3.25 m ahead, one there within 3.55 m: needed, caught
        (None, 3.0, 2.0),  # needed, nothing seen
        (4.0, 0.5, 3.0),  # too slow for the brake: not counted
        (4.0, 5.0, math.inf),  # the episode ends on this observation: nothing comes after it to brake
    ]

    def __init__(self) -> None:
        self.unwrapped = self
        self.config = EnvConfig(perception="ground_truth")
        self.t = 0

    def _obs(self) -> tuple[dict[str, np.ndarray], dict]:
        metres, speed, lead = self.STEPS[self.t]
        cells = [] if metres is None else [(PEDESTRIAN, 4, metres, 255), (PEDESTRIAN, 3, metres, 255)]
        semantic, depth = observation(cells)
        state = np.zeros(7, np.float32)
        state[0] = speed / STATE_SPEED_SCALE
        obs = {"semantic": semantic[0], "depth": depth[0], "route": route_at(0.0)[0], "state": state}
        return obs, {"hazards": {"lead": lead}}

    def reset(self, seed: int) -> tuple[dict[str, np.ndarray], dict]:
        self.t = 0
        return self._obs()

    def step(self, action: np.ndarray) -> tuple:
        self.t += 1
        obs, info = self._obs()
        return obs, 0.0, False, self.t == len(self.STEPS) - 1, info


@pytest.mark.parametrize(
    "specs, false_alarms, caught",
    [([], 1, 1), ([["h", "min_height_m=0.3"]], 0, 1), ([["wide", "min_height_m=0.5"]], 0, 0)],
)
def test_counts_false_alarms_and_needed_steps_on_a_scripted_episode(specs, false_alarms, caught):
    variants = brake_alarms.parse_variants(specs)
    name = specs[0][0] if specs else "default"
    result = brake_alarms.count_alarms(ScriptedEpisode(), variants, [0, 1], 5.0, driver=lambda obs, env: None)
    assert result["moving_steps"] == 2 * 3
    counts = result["variants"][name]
    assert counts["false_alarms"] == 2 * false_alarms and counts["episodes_with_false_alarms"] == 2 * false_alarms
    assert counts["needed"] == 2 * 2 and counts["caught"] == 2 * caught
    assert counts["caught_share"] == pytest.approx(caught / 2)


def test_the_result_file_names_the_bundled_weights_by_path_and_hash(tmp_path):
    out = tmp_path / "alarms.json"
    assert brake_alarms.main(["--episodes", "1", "--max-steps", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result == result | weights_record(bundled_weights())
    assert result["seeds"] == [0] and set(result["variants"]) == {"default"}
