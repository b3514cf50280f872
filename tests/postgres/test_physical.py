"""Physical base backups (pg_basebackup tar streamed into the repository) against a real cluster
that archives its WAL into the same repository through wal-push."""

from __future__ import annotations

import re
import tarfile
import time

import pytest

from wal_support import ServerRepo, enable_archiving, switch_and_wait

PASSWORD = "Phys-9xQ2-never-in-argv"


@pytest.fixture(scope="module")
def setup(pg_cluster):
    c = pg_cluster()
    c.psql(f"CREATE ROLE backup_user LOGIN SUPERUSER REPLICATION PASSWORD '{PASSWORD}'")
    hba = c.dir / "data" / "pg_hba.conf"
    hba.write_text(
        "host all backup_user 127.0.0.1/32 scram-sha-256\n"
        "host replication backup_user 127.0.0.1/32 scram-sha-256\n" + hba.read_text()
    )
    c.psql("SELECT pg_reload_conf()")
    c.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 50000) g")

    sr = ServerRepo.create()
    pw = sr.dir / "db-password"
    pw.write_text(PASSWORD + "\n")
    pw.chmod(0o600)
    # pg_bin_dir: wrappers that log their argv and whether PGPASSWORD was set, then run the real one.
    bin_dir = sr.dir / "bin"
    bin_dir.mkdir()
    log = sr.dir / "argv.log"
    for name in ("pg_basebackup", "pg_dump", "pg_restore", "psql"):
        w = bin_dir / name
        w.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$0 $*" >> "{log}"\n'
            f'[ -n "$PGPASSWORD" ] && echo "PGPASSWORD-in-env" >> "{log}"\n'
            f'exec "{c.bin}/{name}" "$@"\n'
        )
        w.chmod(0o755)
    sr.write_config(
        f'url = "{c.url("postgres", "backup_user")}"\npassword_file = "{pw}"\n'
        f'mode = "physical"\npg_bin_dir = "{bin_dir}"'
    )
    assert sr.cli("init").code == 0
    enable_archiving(c, sr.archive_command())
    switch_and_wait(c)
    yield c, sr, log
    sr.remove()


def test_base_backup_metadata_and_content(setup) -> None:
    c, sr, log = setup
    r = sr.cli("backup", "--json", timeout=180)
    assert r.code == 0, r.out + r.err
    [snap] = r.json()["snapshots"]
    md = snap["metadata"]
    assert snap["source"] == "database" and snap["type"] == "full"
    assert md["mode"] == "physical" and md["base_file"] == "base.tar"
    assert md["system_identifier"] == c.psql("SELECT system_identifier FROM pg_control_system()")
    assert md["server_version_num"] == int(c.psql("SHOW server_version_num"))
    assert md["timeline"] == 1 and md["wal_segment_size"] == 16 * 1024 * 1024
    lsn = lambda s: (lambda a, b: (int(a, 16) << 32) | int(b, 16))(*s.split("/"))  # noqa: E731
    assert lsn(md["start_lsn"]) <= lsn(md["stop_lsn"])
    assert md["start_time"] <= md["stop_time"]
    assert md["start_wal_file"] == c.psql(f"SELECT pg_walfile_name('{md['start_lsn']}')")
    assert md["base_size"] == snap["summary"]["total_bytes"] > 10 * 1024 * 1024

    # The stored tar is pg_basebackup's: its backup_label names the same start point.
    out = sr.dir / "restored"
    r = sr.cli("restore", snap["id"], "--target", str(out))
    assert r.code == 0, r.err
    with tarfile.open(out / "base.tar") as tar:
        label = tar.extractfile("backup_label").read().decode()
        names = set(tar.getnames())
    assert f"START WAL LOCATION: {md['start_lsn']} (file {md['start_wal_file']})" in label
    assert "START TIMELINE: 1" in label
    assert {"PG_VERSION", "global/pg_control", "backup_manifest"} <= names

    # The .backup history file and every WAL file the backup needs are archived.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        wal = sorted(p.name for p in (sr.repo / "wal").iterdir())
        if (
            any(re.fullmatch(md["start_wal_file"] + r"\.[0-9A-F]{8}\.backup", n) for n in wal)
            and md["stop_wal_file"] in wal
        ):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"backup WAL not archived: {wal}")
    r = sr.cli("database", "status", "--json", as_server=False)
    assert r.code == 0, r.err
    # Nothing after the backup's end is archived yet: no point in time can be restored so far.
    assert r.json()["recovery_window"] is None
    switch_and_wait(c)
    r = sr.cli("database", "status", "--json", as_server=False)
    st = r.json()
    assert st["base_backups"] == 1 and st["gaps"] == []
    assert st["recovery_window"]["from"] == md["stop_time"]
    assert st["recovery_window"]["needs_from_segment"] == md["start_wal_file"]
    assert st["server"]["failed_count"] == 0

    # The password reached pg_basebackup only through its environment.
    text = log.read_text()
    assert "pg_basebackup" in text and "-X none" in text and "PGPASSWORD-in-env" in text
    assert PASSWORD not in text
    for f in sr.repo.rglob("*"):
        if f.is_file() and f.parent.name in ("snapshots", "locks", "wal"):
            assert PASSWORD.encode() not in f.read_bytes()


def test_second_base_backup_deduplicates(setup) -> None:
    c, sr, _ = setup
    first = sr.cli("backup", "--json", timeout=180)
    assert first.code == 0, first.err
    c.psql("INSERT INTO t SELECT g, 'new' FROM generate_series(1, 100) g")
    r = sr.cli("backup", "--json", timeout=180)
    assert r.code == 0, r.err
    [snap] = r.json()["snapshots"]
    assert snap["summary"]["data_added"] < snap["metadata"]["base_size"] / 2


def test_tar_tap_reads_label_and_manifest_at_any_read_size(tmp_path) -> None:
    import io

    from core.sources.postgres.physical import TarTap, parse_label, parse_manifest_tail

    label = b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n"
    manifest = (
        b'{"Files": [' + b'{"Path": "x"},' * 40000 + b'{}],\n"WAL-Ranges": [\n'
        b'{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000138" }\n], "Manifest-Checksum": "ab"}\n'
    )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (
            ("PG_VERSION", b"15\n"),
            ("backup_label", label),
            ("base/1/1259", bytes(70000)),
            ("empty", b""),
            ("backup_manifest", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    for step in (1, 511, 512, 4096, 1 << 20):
        src = io.BytesIO(raw)
        tap = TarTap(src)
        got = bytearray()
        view = memoryview(bytearray(step))
        while n := tap.readinto(view):
            got += view[:n]
        assert bytes(got) == raw
        assert tap.files["backup_label"] == label
        assert manifest.endswith(tap.files["backup_manifest"])
        assert parse_label(label.decode()) == {
            "start_lsn": "0/2000028",
            "start_wal_file": "000000010000000000000002",
            "timeline": 1,
        }
        assert parse_manifest_tail(tap.files["backup_manifest"]) == {"stop_lsn": "0/2000138", "stop_timeline": 1}
