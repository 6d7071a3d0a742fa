"""The errors a training run ends with when it cannot start or go on; each message names the file and what to do."""

from __future__ import annotations


class TrainingError(RuntimeError):
    """A training run cannot start or go on (bad data, unknown stage, mismatching checkpoint)."""


class CheckpointError(TrainingError):
    """A checkpoint file that cannot be read or does not fit this run; the message names the file."""
