"""Energy from power readings: one rule for the Train screen's running figure and the engine's figure
in a run's metadata. Stdlib only.

Readings are integrated with the trapezoid rule. A gap longer than `max_gap_s` (the UI was busy, the
sampler hung, the run was paused) is not bridged: guessing the power across it would invent energy.
"""

from __future__ import annotations

import math


def trapezoid_wh(t0: float, w0: float, t1: float, w1: float) -> float:
    """Watt-hours between two readings (seconds, watts)."""
    return (w0 + w1) / 2 * (t1 - t0) / 3600


class EnergyMeter:
    """Watt-hours so far. `add(t, watts)` for each reading; `pause()` where no energy should be billed
    (between runs, while a run is paused); `wh` starts from an earlier figure on resume."""

    def __init__(self, wh: float = 0.0, max_gap_s: float | None = 10.0) -> None:
        self.wh = wh
        self.max_gap_s = math.inf if max_gap_s is None else max_gap_s
        self._last: tuple[float, float] | None = None

    def add(self, t: float, watts: float | None) -> float:
        """A reading at time t (seconds); None (no reading) ends the current stretch. Returns wh."""
        if watts is None:
            self._last = None
            return self.wh
        if self._last is not None and 0 < t - self._last[0] <= self.max_gap_s:
            self.wh += trapezoid_wh(*self._last, t, watts)
        self._last = (t, watts)
        return self.wh

    def pause(self) -> None:
        self._last = None

    def cost(self, price_per_kwh: float) -> float:
        return self.wh / 1000 * price_per_kwh
