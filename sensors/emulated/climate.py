"""The physical conditions an emulated chip "measures": fixed values for tests, or a drifting room for the demo."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Quantity:
    """base + amplitude · sin(2π·t/period_s + phase) + gaussian noise; amplitude and noise 0 make it fixed."""

    base: float
    amplitude: float = 0.0
    period_s: float = 1800.0
    phase: float = 0.0
    noise: float = 0.0

    def at(self, t: float, rng: random.Random) -> float:
        value = self.base + self.amplitude * math.sin(2 * math.pi * t / self.period_s + self.phase)
        if self.noise:
            value += rng.gauss(0.0, self.noise)
        return value


class Climate:
    """Temperature, humidity and pressure as functions of wall-clock time. Thread-safe: sensors sample it
    from executor threads while a test changes it."""

    def __init__(
        self,
        temperature_c: float = 21.0,
        humidity_pct: float = 45.0,
        pressure_hpa: float = 1013.25,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.temperature = Quantity(temperature_c)
        self.humidity = Quantity(humidity_pct)
        self.pressure = Quantity(pressure_hpa)
        self.clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def drifting_room(
        cls,
        temperature_c: float = 21.5,
        humidity_pct: float = 42.0,
        pressure_hpa: float = 1012.0,
        *,
        seed: int | None = None,
        period_s: float = 1800.0,
        temperature_swing_c: float = 0.8,
        clock: Callable[[], float] = time.time,
    ) -> Climate:
        """Values that move slowly like a real room: a slow sine around the base plus a little sensor noise.

        Humidity moves against temperature (warmer air, lower relative humidity), pressure on a longer cycle.
        """
        rng = random.Random(seed)
        phase = rng.uniform(0, 2 * math.pi)
        climate = cls(temperature_c, humidity_pct, pressure_hpa, clock=clock, seed=seed)
        climate.temperature = Quantity(temperature_c, temperature_swing_c, period_s, phase, 0.02)
        climate.humidity = Quantity(humidity_pct, 3.0, period_s, phase + math.pi, 0.15)
        climate.pressure = Quantity(pressure_hpa, 2.5, period_s * 8, phase / 2, 0.03)
        return climate

    def set(
        self,
        temperature_c: float | None = None,
        humidity_pct: float | None = None,
        pressure_hpa: float | None = None,
    ) -> None:
        """Fix quantities at exact values (drift and noise off for the ones given)."""
        with self._lock:
            if temperature_c is not None:
                self.temperature = Quantity(temperature_c)
            if humidity_pct is not None:
                self.humidity = Quantity(humidity_pct)
            if pressure_hpa is not None:
                self.pressure = Quantity(pressure_hpa)

    def sample(self, t: float | None = None) -> tuple[float, float, float]:
        """(temperature_c, humidity_pct, pressure_hpa) at wall-clock time t (default: now)."""
        t = self.clock() if t is None else t
        with self._lock:
            return (
                self.temperature.at(t, self._rng),
                min(100.0, max(0.0, self.humidity.at(t, self._rng))),
                self.pressure.at(t, self._rng),
            )
