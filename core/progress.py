"""Rate and ETA for progress displays: a smoothed rate, and a remaining time only when
there is a total to aim at. Pure, with the clock passed in, so it is tested without time."""

from __future__ import annotations

from dataclasses import dataclass

MIN_INTERVAL = 0.25  # seconds between samples that count: closer ones are noise
HALF_LIFE = 3.0  # seconds: how fast the smoothed rate follows a change of pace


@dataclass(slots=True)
class RateMeter:
    """An exponentially weighted rate of a growing count (bytes done), weighted by time so
    that irregular samples weigh what they cover."""

    half_life: float = HALF_LIFE
    rate: float = 0.0
    _t: float | None = None
    _done: int = 0

    def update(self, now: float, done: int) -> float:
        if self._t is None:
            self._t, self._done = now, done
            return self.rate
        dt = now - self._t
        if dt < MIN_INTERVAL:
            return self.rate
        inst = max(0, done - self._done) / dt
        if self.rate == 0.0:
            self.rate = inst
        else:
            alpha = 1.0 - 0.5 ** (dt / self.half_life)
            self.rate += alpha * (inst - self.rate)
        self._t, self._done = now, done
        return self.rate


def eta_seconds(done: int, total: int | None, rate: float) -> float | None:
    """Seconds left at ``rate``; None without a total or a rate (never a made-up figure)."""
    if total is None or rate <= 0:
        return None
    return max(0, total - done) / rate


def fraction(done: int, total: int | None, *, final: bool) -> float | None:
    """Done over total, kept below 1 until the work is known to be complete: a forecast
    total (a scan still running, files that grew) must not show 100 % early."""
    if not total:
        return None
    f = done / total
    return min(f, 1.0 if final else 0.99)


__all__ = ["RateMeter", "eta_seconds", "fraction"]
