"""Driving agents on perception features: SB3 feature extractors, PPO training, leaderboard-style evaluation."""
