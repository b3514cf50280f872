"""Remote locations on real servers: copies to S3 (moto's server speaking the real
protocol), a restore from S3 after the primary is lost, an S3 server that is down during a
backup and back for the next, and an SFTP location (OpenSSH's sshd) with free space."""

from __future__ import annotations

import logging
import shutil
import uuid

from locations_support import remote_fields, tree_digest
from servers import free_port, moto_s3, openssh_sftp, remote_config  # noqa: F401  (fixtures)


def _s3(server_endpoint: str, creds, **extra) -> dict:
    bucket = f"axisor-{uuid.uuid4().hex[:12]}"
    return {
        "provider": "aws-s3",
        "bucket_name": bucket,
        "endpoint": server_endpoint,
        "region": "us-east-1",
        "allow_insecure": True,
        "path_prefix": "repo",
        "credentials_file": creds,
        **extra,
    }


def test_backup_copies_to_s3_and_restore_from_s3_after_the_primary_is_lost(sites, moto_s3, tmp_path):  # noqa: F811
    sites.add("cloud", **_s3(moto_s3.endpoint, moto_s3.credentials_file))
    sites.ok("init")
    out = sites.ok("backup", "--json").json()
    (copy,) = out["copies"]
    assert copy["target"] == "cloud" and copy["created"] is True and copy["error"] is None
    assert copy["copied"] == [out["snapshots"][0]["id"]] and copy["bytes_copied"] > 2_000_000

    cat = sites.ok("snapshots", "--json").json()
    (entry,) = cat["snapshots"]
    assert {c["name"]: c["state"] for c in entry["locations"]} == {"local": "complete", "cloud": "complete"}
    status = {x["name"]: x for x in sites.ok("locations", "--json").json()["locations"]}
    cloud = status["cloud"]
    assert cloud["reachable"] and cloud["initialized"] and cloud["provider"] == "aws-s3"
    assert cloud["where"].startswith("s3://") and cloud["latency_ms"] >= 0
    assert cloud["bytes_used"] > 2_000_000 and cloud["free_bytes"] is None  # S3 cannot tell
    assert cloud["repository_id"] == status["local"]["repository_id"]

    expected = tree_digest(sites.ws.src)
    shutil.rmtree(sites.ws.repo)
    r = sites.cli("restore", "latest", "--target", str(tmp_path / "out"), "--json")
    assert r.code == 0, r.err
    assert r.json()["location"] == "cloud"
    assert tree_digest(tmp_path / "out" / str(sites.ws.src).lstrip("/")) == expected


def test_a_stopped_s3_server_does_not_fail_the_backup_and_the_next_run_catches_up(sites, tmp_path):
    from moto.server import ThreadedMotoServer

    port = free_port()
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIATESTKEY\naws_secret_access_key = test-secret-key\n")
    creds.chmod(0o600)  # credentials files readable by others are refused
    creds.chmod(0o600)
    # Refused connections fail at once; one retry and the default timeout ride out a loaded machine.
    sites.add("cloud", **_s3(f"http://127.0.0.1:{port}", creds, retries=1))
    sites.ok("init")

    out = sites.ok("backup", "--json").json()  # nothing listens on the port yet
    first = out["snapshots"][0]["id"]
    (copy,) = out["copies"]
    assert copy["error"] and copy["pending"] == [first] and copy["copied"] == []
    status = {x["name"]: x for x in sites.ok("locations", "--json").json()["locations"]}
    assert status["cloud"]["reachable"] is False and status["cloud"]["error"]
    assert status["cloud"]["last_error"]

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        (sites.ws.src / "new.txt").write_text("after the outage\n")
        out = sites.ok("backup", "--json").json()
        second = out["snapshots"][0]["id"]
        (copy,) = out["copies"]
        assert copy["error"] is None and copy["copied"] == [first, second]
        cat = sites.ok("snapshots", "--json").json()
        assert [[c["state"] for c in e["locations"]] for e in cat["snapshots"]] == [["complete"] * 2] * 2
        r = sites.cli("restore", "latest", "--from", "cloud", "--target", str(tmp_path / "out"))
        assert r.code == 0, r.err
        assert tree_digest(tmp_path / "out" / str(sites.ws.src).lstrip("/")) == tree_digest(sites.ws.src)
    finally:
        server.stop()


def test_sftp_location_reports_free_space_and_serves_a_restore(sites, openssh_sftp, tmp_path):  # noqa: F811
    loc = remote_config("sftp", openssh_sftp)
    sites.add("vault", **remote_fields(loc))
    sites.ok("init")
    out = sites.ok("backup", "--json").json()
    (copy,) = out["copies"]
    assert copy["target"] == "vault" and copy["error"] is None and copy["copied"]
    vault = {x["name"]: x for x in sites.ok("locations", "--json").json()["locations"]}["vault"]
    assert vault["reachable"] and vault["provider"] == "sftp" and vault["free_bytes"] > 0
    assert vault["bytes_used"] > 2_000_000
    r = sites.cli("restore", "latest", "--from", "vault", "--target", str(tmp_path / "out"), "--json")
    assert r.code == 0, r.err
    assert tree_digest(tmp_path / "out" / str(sites.ws.src).lstrip("/")) == tree_digest(sites.ws.src)
