"""Location probes feed the RTO forecast (issue 21, part 3): a secondary no drill has run
from gets a forecast once it is probed, borrowed from the primary's drills and capped at
its own read speed; its first drill records that forecast and how far off it was. Real
PostgreSQL, real files, the real CLI, a real S3 server as the secondary."""

from __future__ import annotations

import json
import re
import uuid

from drills.conftest import run_json
from servers import moto_s3  # noqa: F401  (fixture: an S3 server)


def _forecast(ws, scenario: str, location: str) -> dict:
    r = ws.cli("status", "--json")
    data = json.loads(r.out)
    return next(f for f in data["rto_forecasts"] if f["scenario"] == scenario and f["location"] == location)


def test_a_probed_secondary_is_forecast_and_its_drill_checks_it(platform, moto_s3) -> None:  # noqa: F811
    far = f"far{uuid.uuid4().hex[:6]}"  # no drill from it in the shared history
    extra = (
        f'[[storage.remote_storage]]\nprovider = "aws-s3"\nname = "{far}"\n'
        f'bucket_name = "axisor-probe-{uuid.uuid4().hex[:10]}"\nendpoint = "{moto_s3.endpoint}"\n'
        f'region = "us-east-1"\npath_prefix = "repo"\ncredentials_file = "{moto_s3.credentials_file}"\n'
        "allow_insecure = true\n"
    )
    platform.config(extra=extra)
    ws = platform.ws
    try:
        assert ws.cli("copy", "--to", far, timeout=300).code == 0
        r = ws.cli("drill", "--scenario", "platform-loss", "--json", timeout=300)  # measures at local
        assert r.code == 0, r.out + r.err
        before = _forecast(ws, "location-loss", far)
        assert before["expected_seconds"] is None and "locations --probe" in before["missing"], before

        r = ws.cli("locations", "--probe", "--json", timeout=120)
        assert r.code == 0, r.out + r.err
        probes = {p["location"]: p for p in json.loads(r.out)["probes"]}
        assert set(probes) == {"local", far}
        assert probes[far]["bytes_per_second"] > 0 and probes[far]["objects_read"] >= 1
        assert probes[far]["latency_ms"] > 0
        jobs = ws.cli("jobs", "--json")
        assert any(j["kind"] == "probe" and j["state"] == "completed" for j in json.loads(jobs.out)["jobs"])

        after = _forecast(ws, "location-loss", far)
        assert after["expected_seconds"] is not None, after
        # Borrowed from the location whose drills ran fastest: local here, or a secondary an
        # earlier test of this shared platform drilled from.
        assert f"no drill from {far} yet" in after["basis"]
        assert re.search(r" at [\w.-]+ \(newest drill ", after["basis"]), after["basis"]
        assert after["low_seconds"] <= after["expected_seconds"] <= after["high_seconds"]

        # The drill records the forecast it was made against, and so how far off it was.
        r = ws.cli("drill", "--scenario", "location-loss", "--from", far, "--json", timeout=300)
        assert r.code == 0, r.out + r.err
        rep = run_json(r)
        recorded = rep["extra"]["forecast"]
        assert recorded["expected_seconds"] is not None and "no drill from" in recorded["basis"]
        off = (rep["rto_seconds"] - recorded["expected_seconds"]) / recorded["expected_seconds"]
        print(
            f"location-loss from {far}: forecast {recorded['expected_seconds']:.2f} s, measured "
            f"{rep['rto_seconds']:.2f} s, {off:+.0%}"
        )
        # A forecast borrowed from another location says it is wider: +-60 % from one drill. On
        # this test's 2-second drills (a cluster start and a cleanup in each) runs measured -21 %
        # to +63 %; the bound below catches a model that is wrong, not the host's jitter.
        assert 0.5 * recorded["low_seconds"] <= rep["rto_seconds"] <= 1.5 * recorded["high_seconds"], (off, recorded)
        # Now the secondary has its own drill: the forecast is its own, no longer borrowed.
        own = _forecast(ws, "location-loss", far)
        assert own["expected_seconds"] is not None and "no drill from" not in own["basis"], own
    finally:
        platform.config()


def test_a_location_that_does_not_answer_is_named_and_not_timed(platform) -> None:
    dead = (
        '[[storage.remote_storage]]\nprovider = "sftp"\nname = "gone"\nendpoint = "127.0.0.1:9"\n'
        'username = "nobody"\npath = "/nowhere"\ntimeout_seconds = 5\nretries = 0\n'
    )
    platform.config(extra=dead)
    try:
        r = platform.ws.cli("locations", "--probe", "--json", timeout=120)
        assert r.code == 1, r.out + r.err
        probes = {p["location"]: p for p in json.loads(r.out)["probes"]}
        assert probes["gone"]["error"] and probes["gone"]["bytes_per_second"] is None
        assert probes["local"]["bytes_per_second"] > 0  # the others are still measured
        text = platform.ws.cli("locations", "--probe", timeout=120)
        assert text.code == 1 and "gone: probe did not answer" in text.out, text.out
    finally:
        platform.config()
