"""Traffic lights: one phase per junction approach (green, yellow, then all-red clearance).

Giving each approach its own green keeps conflicting flows apart, so NPCs need no gap acceptance
at junctions (and cannot deadlock there); a junction's cycle starts at a random offset.
"""

from __future__ import annotations

import numpy as np

from .network import STOP_BACK, Network

GREEN_S, YELLOW_S, ALL_RED_S = 6.0, 2.0, 2.5
GREEN, YELLOW, RED = 0, 1, 2
_PHASE = GREEN_S + YELLOW_S + ALL_RED_S


class TrafficLights:
    """Light states of every junction approach at a simulated time."""

    def __init__(self, net: Network, rng: np.random.Generator) -> None:
        self.signalised = net.signalised
        self.n_approaches = np.array([len(r) for r in net.node_roads])
        self.offsets = rng.uniform(0, _PHASE * np.maximum(self.n_approaches, 1))
        lanes = net.lanes
        self.lane_junction = np.array([lane.junction for lane in lanes])
        self.lane_approach = np.array([lane.approach for lane in lanes])
        self.lane_is_road = np.array([lane.road >= 0 for lane in lanes])
        self.lane_length = np.array([lane.length for lane in lanes])
        #: road lanes that end at a light, and where their stop line is (arc length on the lane)
        self.lane_signal = self.lane_is_road & self.signalised[self.lane_junction]
        self.lane_stop_s = self.lane_length - STOP_BACK
        self.stop_lines = self._stop_lines(net)

    def state(self, junction: np.ndarray, approach: np.ndarray, t: float) -> np.ndarray:
        """GREEN, YELLOW or RED for arrays of (junction, approach); unsignalised junctions are GREEN."""
        junction, approach = np.asarray(junction), np.asarray(approach)
        n = np.maximum(self.n_approaches[junction], 1)
        local = (t + self.offsets[junction]) % (_PHASE * n)
        active = (local // _PHASE).astype(np.int64)
        within = local % _PHASE
        out = np.where(
            active != approach,
            RED,
            np.where(within < GREEN_S, GREEN, np.where(within < GREEN_S + YELLOW_S, YELLOW, RED)),
        )
        return np.where(self.signalised[junction], out, GREEN)

    def lane_state(self, lanes: np.ndarray, t: float) -> np.ndarray:
        """Light state at the end of each lane (GREEN for connectors and unsignalised ends)."""
        lanes = np.asarray(lanes)
        st = self.state(self.lane_junction[lanes], self.lane_approach[lanes], t)
        return np.where(self.lane_signal[lanes], st, GREEN)

    def _stop_lines(self, net: Network) -> dict[str, np.ndarray]:
        """Stop-line segments of signalised lanes: endpoints a, b, travel direction d, lane index."""
        a, b, d, idx = [], [], [], []
        for i, lane in enumerate(net.lanes):
            if not self.lane_signal[i]:
                continue
            s = lane.length - STOP_BACK
            k = int(np.clip(np.searchsorted(lane.cum, s), 1, len(lane.cum) - 1))
            t = (s - lane.cum[k - 1]) / max(lane.cum[k] - lane.cum[k - 1], 1e-9)
            p = lane.points[k - 1] + (lane.points[k] - lane.points[k - 1]) * t
            dv = lane.points[k] - lane.points[k - 1]
            dv = dv / np.linalg.norm(dv)
            right = np.array([-dv[1], dv[0]])
            a.append(p - right * 1.75)
            b.append(p + right * 1.75)
            d.append(dv)
            idx.append(i)
        return {
            "a": np.array(a).reshape(-1, 2),
            "b": np.array(b).reshape(-1, 2),
            "d": np.array(d).reshape(-1, 2),
            "lane": np.array(idx, dtype=np.int64),
        }
