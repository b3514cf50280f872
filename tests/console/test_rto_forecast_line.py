"""The dashboard's "RTO forecast:" line: the forecasts `status` makes, the measured ones,
and nothing until a drill has measured something (no made-up number)."""

from __future__ import annotations

from core.drills.forecast import RtoForecast
from core.jobs.status import Health
from screens.dashboard import _forecast_lines, _health_text


def _forecast(scenario: str, location: str, expected: float | None) -> RtoForecast:
    if expected is None:
        return RtoForecast(scenario, location, None, None, None, 3600.0, (), (), "", "no forecast: no measurement yet")
    return RtoForecast(scenario, location, expected, expected * 0.7, expected * 1.3, 3600.0, (), ("d",), "basis")


def test_measured_forecasts_are_shown_and_the_unmeasured_counted():
    health = Health(
        "ok",
        (),
        None,
        forecasts=(_forecast("platform-loss", "local", 16.0), _forecast("location-loss", "off[b]site", None)),
    )
    [line] = _forecast_lines(health)
    assert line == (
        "RTO forecast: platform-loss from local 16.0 s (11.2 s-20.8 s), within the 60m objective; "
        "1 with no measurement yet"
    )
    assert line in _health_text(health, [])


def test_nothing_measured_yet_adds_no_line():
    health = Health("ok", (), None, forecasts=(_forecast("platform-loss", "local", None),))
    assert _forecast_lines(health) == []
