"""The compromised-host drill (issue 17): the platform restored from the location a host
with stolen keys could not destroy. It passes only when that location really refuses
deletes (an `axisor-backup serve --append-only` behind a real OpenSSH forced command), and
its report says what survived there; a location that accepts deletes fails it by name."""

from __future__ import annotations

from drills.conftest import run_json
from drills.test_drills import CHECKS, _check
from locations_support import remote_fields, remote_toml
from servers import openssh_serve, remote_config  # noqa: F401 - fixture


def test_the_drill_restores_from_the_append_only_vault_and_says_what_survived(platform, openssh_serve):  # noqa: F811
    vault = remote_config("ssh-append", openssh_serve)
    platform.config(CHECKS, extra=remote_toml("vault", **remote_fields(vault)))
    r = platform.ws.cli("copy", "--to", "vault", timeout=300)
    assert r.code == 0, r.out + r.err
    primary = platform.ws.repo
    aside = platform.ws.root / "primary-aside"
    primary.rename(aside)  # the host's primary is gone, or in the attacker's hands
    try:
        r = platform.ws.cli("drill", "--scenario", "compromised-host", "--json", timeout=300)
        assert r.code == 0, r.out + r.err
        rep = run_json(r)
        assert rep["scenario"] == "compromised-host" and rep["location"] == "vault" and rep["passed"], rep["failures"]
        refuses = _check(rep, "location refuses deletes")
        assert (refuses["status"], refuses["kind"]) == ("pass", "immutable")
        survived = _check(rep, "what survived")
        assert survived["status"] == "info" and "snapshots at vault; newest: " in survived["detail"]
        assert "database" in survived["detail"]
        assert _check(rep, "uploads restored")["status"] == "pass"
        assert not primary.exists()
        assert platform.left_behind() == []
    finally:
        aside.rename(primary)


def test_a_location_that_accepts_deletes_fails_the_drill_by_name(platform, tmp_path):
    nas = tmp_path / "nas"
    platform.config(CHECKS, extra=remote_toml("nas", provider="local", path=nas))
    assert platform.ws.cli("copy", "--to", "nas", timeout=300).code == 0
    r = platform.ws.cli("drill", "--scenario", "compromised-host", "--json", timeout=300)
    assert r.code == 19, r.out + r.err
    rep = run_json(r)
    refuses = _check(rep, "location refuses deletes")
    assert refuses["status"] == "fail" and "nas accepts deletes" in refuses["detail"]
    assert platform.left_behind() == []
