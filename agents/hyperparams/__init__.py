"""Tuned hyperparameters for `CarlaPerception-v0`, in the form RL Baselines3 Zoo reads (a `hyperparams` dict).

Each module here is a Zoo configuration file that names the project's `PerceptionExtractor` directly,
so the Zoo trains with the same settings as `agents.train_ppo`:

    python -m rl_zoo3.train --algo ppo --env CarlaPerception-v0 --gym-packages carla_gym --conf-file agents.hyperparams.ppo
    python -m rl_zoo3.train --algo sac --env CarlaPerception-v0 --gym-packages carla_gym --conf-file agents.hyperparams.sac
    python -m rl_zoo3.enjoy --algo ppo --env CarlaPerception-v0 --gym-packages carla_gym -f logs --no-render

`--conf-file` takes the module name (the Zoo imports it); a YAML file cannot name a
class from this project. `--env-kwargs` and `--hyperparams` override single values as usual, e.g.
`--env-kwargs perception:"'ground_truth'" camera_size:"(64, 128)"`.
"""
