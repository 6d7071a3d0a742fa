"""Learning curves from TensorBoard event files: the right scalar against env steps, and a PNG of it."""

from __future__ import annotations

import json

import cv2
import pytest
from torch.utils.tensorboard import SummaryWriter

from agents import learning_curves


def _log(folder, scalars: dict[str, list[tuple[int, float]]]) -> None:
    writer = SummaryWriter(str(folder))
    for tag, points in scalars.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def test_reads_route_completion_by_env_step_across_a_resumed_run(tmp_path):
    _log(tmp_path / "run" / "tb" / "ppo_1", {"driving/route_completion": [(2048, 0.1), (4096, 0.25)]})
    _log(  # resumed: goes on from 4096 and logs 4096 again
        tmp_path / "run" / "tb" / "ppo_2",
        {"driving/route_completion": [(4096, 0.3), (6144, 0.5)], "rollout/ep_rew_mean": [(6144, 9.0)]},
    )
    tag, steps, values = learning_curves.read_scalars(tmp_path / "run")
    assert tag == "driving/route_completion"
    assert steps == [2048, 4096, 6144]
    assert values == pytest.approx([0.1, 0.3, 0.5])


def test_falls_back_to_the_return_and_names_what_a_run_logs(tmp_path):
    _log(tmp_path / "run", {"rollout/ep_rew_mean": [(100, 1.5)], "train/loss": [(100, 0.2)]})
    assert learning_curves.read_scalars(tmp_path / "run")[:2] == ("rollout/ep_rew_mean", [100])
    with pytest.raises(ValueError, match="logs none of eval/x; it logs rollout/ep_rew_mean, train/loss"):
        learning_curves.read_scalars(tmp_path / "run", ["eval/x"])
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        learning_curves.read_scalars(tmp_path / "empty")


def test_cli_plots_each_run_into_a_png_and_keeps_an_earlier_png_on_a_bad_run(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _log(tmp_path / "a", {"driving/route_completion": [(0, 0.0), (1000, 0.4), (2000, 0.8)]})
    _log(tmp_path / "b", {"driving/route_completion": [(0, 0.1), (1000, 0.2)]})
    out = tmp_path / "plots" / "curves.png"
    assert (
        learning_curves.main([str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "A", "B", "--out", str(out)]) == 0
    )
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (440, 640, 3)  # a legend line under the axes per run
    before = out.read_bytes()
    with pytest.raises(SystemExit) as err:
        learning_curves.main([str(tmp_path / "a"), str(tmp_path / "missing"), "--out", str(out)])
    assert err.value.code == 2 and "missing" in capsys.readouterr().err
    assert out.read_bytes() == before
    with pytest.raises(SystemExit):
        learning_curves.main([str(tmp_path / "a"), "--labels", "A", "B", "--out", str(out)])


@pytest.mark.parametrize(
    "window, expected",
    [(1, [0.0, 0.4, 0.8, 0.2]), (2, [0.0, 0.2, 0.6, 0.5]), (3, [0.0, 0.2, 0.4, 0.4666667])],
)
def test_smooth_is_a_trailing_mean(window, expected):
    assert learning_curves.smooth([0.0, 0.4, 0.8, 0.2], window) == pytest.approx(expected)


def test_cli_writes_the_raw_points_as_json(tmp_path):
    pytest.importorskip("matplotlib")
    _log(
        tmp_path / "a",
        {
            "driving/route_completion": [(0, 0.0), (1000, 0.4), (2000, 0.8)],
            "rollout/ep_len_mean": [(2000, 30.0)],
            "train/loss": [(2000, 0.5)],
        },
    )
    out, data = tmp_path / "c.png", tmp_path / "c.json"
    assert (
        learning_curves.main(
            [str(tmp_path / "a"), "--labels", "A", "--smooth", "2", "--out", str(out), "--json", str(data)]
        )
        == 0
    )
    saved = json.loads(data.read_text())
    curve = saved["curves"][0]
    assert curve["smoothing_window"] == 2
    assert len(saved["curves"]) == 1 and (curve["label"], curve["tag"]) == ("A", "driving/route_completion")
    assert curve["steps"] == [0, 1000, 2000] and curve["values"] == pytest.approx([0.0, 0.4, 0.8])  # not smoothed
    assert curve["scalars"]["driving/route_completion"]["steps"] == [0, 1000, 2000]
    assert curve["scalars"]["rollout/ep_len_mean"]["values"] == pytest.approx([30.0])
    assert "train/loss" not in curve["scalars"]
    with pytest.raises(SystemExit):
        learning_curves.main([str(tmp_path / "a"), "--smooth", "0", "--out", str(out)])


def test_smooth_takes_one_window_per_run(tmp_path):
    pytest.importorskip("matplotlib")
    _log(tmp_path / "ppo", {"driving/route_completion": [(0, 0.0), (1000, 0.4), (2000, 0.8)]})
    _log(tmp_path / "dagger", {"driving/route_completion": [(0, 0.9), (1000, 0.5)]})
    runs, out, data = [str(tmp_path / "ppo"), str(tmp_path / "dagger")], str(tmp_path / "c.png"), tmp_path / "c.json"
    assert learning_curves.main([*runs, "--smooth", "2", "1", "--out", out, "--json", str(data)]) == 0
    assert [c["smoothing_window"] for c in json.loads(data.read_text())["curves"]] == [2, 1]
    assert learning_curves.main([*runs, "--smooth", "3", "--out", out, "--json", str(data)]) == 0
    assert [c["smoothing_window"] for c in json.loads(data.read_text())["curves"]] == [3, 3]
    with pytest.raises(ValueError, match="3 smoothing windows for 2 runs"):
        learning_curves.plot_curves(runs, out, window=[1, 2, 3])


def test_timesteps_cuts_every_run_to_the_same_budget(tmp_path):
    pytest.importorskip("matplotlib")
    _log(
        tmp_path / "long",
        {"driving/route_completion": [(0, 0.1), (1000, 0.4), (2000, 0.8)], "rollout/ep_len_mean": [(2000, 9.0)]},
    )
    _log(tmp_path / "short", {"driving/route_completion": [(0, 0.2), (1000, 0.3)]})
    data = tmp_path / "c.json"
    runs = [str(tmp_path / "long"), str(tmp_path / "short")]
    assert (
        learning_curves.main([*runs, "--timesteps", "1000", "--out", str(tmp_path / "c.png"), "--json", str(data)]) == 0
    )
    long, short = json.loads(data.read_text())["curves"]
    assert long["steps"] == [0, 1000] and long["values"] == pytest.approx([0.1, 0.4])
    assert long["scalars"]["rollout/ep_len_mean"] == {"steps": [], "values": []}
    assert short["steps"] == [0, 1000]
    with pytest.raises(SystemExit):
        learning_curves.main([*runs, "--timesteps", "0", "--out", str(tmp_path / "c.png")])


def test_a_curve_saved_with_json_is_drawn_again_without_its_logs(tmp_path):
    pytest.importorskip("matplotlib")
    _log(tmp_path / "a", {"driving/route_completion": [(0, 0.2), (1000, 0.6)], "rollout/ep_len_mean": [(1000, 9.0)]})
    saved = tmp_path / "saved.json"
    learning_curves.main(
        [str(tmp_path / "a"), "--labels", "old run", "--out", str(tmp_path / "1.png"), "--json", str(saved)]
    )
    (tmp_path / "a").rename(tmp_path / "gone")  # the run's logs are lost; its saved curve remains
    again = tmp_path / "again.json"
    run = f"{saved}#old run"
    assert learning_curves.main([run, "--out", str(tmp_path / "2.png"), "--json", str(again)]) == 0
    curve = json.loads(again.read_text())["curves"][0]
    assert (curve["label"], curve["tag"], curve["steps"]) == ("old run", "driving/route_completion", [0, 1000])
    assert curve["values"] == pytest.approx([0.2, 0.6])
    assert curve["run"] == str(tmp_path / "a")  # where the points were logged, not the JSON they came from
    assert curve["scalars"]["rollout/ep_len_mean"]["values"] == pytest.approx([9.0])
    with pytest.raises(ValueError, match=r"no curve labelled 'new run'.*\['old run'\]"):
        learning_curves.read_scalars(f"{saved}#new run")
    with pytest.raises(FileNotFoundError, match="no such file of saved curves"):
        learning_curves.read_scalars(tmp_path / "missing.json")
