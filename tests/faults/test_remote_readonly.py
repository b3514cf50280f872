"""A remote location that refuses writes (issue 15, loose end): an S3 credential allowed to
read but not to write, an SFTP folder the login user may not write. Reading commands
(snapshots, ls, verify, restore) go on without a lock there, with one note; commands that
write stop with exit 24 before writing anything.

S3: moto's server has no per-credential policies, so a small proxy in front of it answers
every write (PUT, POST, DELETE) the way S3 answers a read-only credential (403
AccessDenied) and forwards every read: the real client and the real protocol, only the
refusal injected. SFTP: OpenSSH's sshd of tests/servers.py, logged into as ``nobody``, over
a folder that user owns but may not write (a read-only share)."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import fault_support as F
from locations_support import remote_fields, remote_toml
from servers import moto_s3, remote_config  # noqa: F401  (fixtures)

NOTE = "note: no lock taken because the storage refuses writes"
DENIED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
          b"<Message>Access Denied</Message></Error>")


def _read_only_proxy(upstream: str):
    """An HTTP server forwarding GET and HEAD to ``upstream`` and refusing the rest."""
    host, port = upstream.removeprefix("http://").split(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _refuse(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(DENIED)))
            self.end_headers()
            self.wfile.write(DENIED)

        do_PUT = do_POST = do_DELETE = _refuse

        def _forward(self) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request(self.command, self.path, headers=dict(self.headers))
            resp = conn.getresponse()
            body = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            conn.close()

        do_GET = do_HEAD = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _site(tmp_path: Path, loc) -> tuple[Path, Path, Path]:
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("alpha\n" * 100)
    (src / "b.bin").write_bytes(bytes(range(256)) * 64)
    cfg, state = tmp_path / "config.toml", tmp_path / "state"
    cfg.write_text(F._config_text(tmp_path / "repo", src, remote_toml("vault", **remote_fields(loc))))
    assert F.cli(cfg, state, "init").code == 0
    r = F.cli(cfg, state, "--json", "backup")
    assert r.code == 0 and r.json["copies"][0]["error"] is None, r
    return src, cfg, state


def _check(tmp_path: Path, src: Path, cfg: Path, state: Path, listing) -> None:
    before = listing()
    r = F.cli(cfg, state, "snapshots")
    assert r.code == 0 and "Traceback" not in r.err and "vault" in r.out and "?vault" not in r.out, r
    for args in (("ls", "latest", "--from", "vault"), ("verify", "--from", "vault"),
                 ("restore", "latest", "--from", "vault", "--target", str(tmp_path / "out"))):
        r = F.cli(cfg, state, *args)
        assert r.code == 0, r
        notes = [line for line in r.err.splitlines() if line.startswith("note: no lock taken")]
        assert len(notes) == 1 and notes[0].startswith(NOTE), r
        assert "Traceback" not in r.err, r
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "docs" / "a.txt").read_text() == "alpha\n" * 100
    assert (out / "b.bin").read_bytes() == bytes(range(256)) * 64
    for args in (("repair", "index", "--location", "vault"), ("repair", "snapshots", "--location", "vault"),
                 ("copy", "--from", "local", "--to", "vault")):
        r = F.cli(cfg, state, *args)
        assert r.code == 24, r
        assert "refuses writes" in r.err and "Traceback" not in r.err, r
    assert listing() == before, "a command wrote to the read-only location"


def test_s3_read_only_credential(moto_s3, tmp_path):  # noqa: F811
    loc = remote_config("s3", moto_s3)
    src, cfg, state = _site(tmp_path, loc)
    proxy, endpoint = _read_only_proxy(moto_s3.endpoint)
    try:
        cfg.write_text(F._config_text(tmp_path / "repo", src,
                                      remote_toml("vault", **remote_fields(replace(loc, endpoint=endpoint)))))
        import boto3

        s3 = boto3.client("s3", endpoint_url=moto_s3.endpoint, region_name="us-east-1",
                          aws_access_key_id="AKIATESTKEY", aws_secret_access_key="test-secret-key")

        def listing():
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket_name)
            return sorted((o["Key"], o["Size"]) for page in pages for o in page.get("Contents", []))

        _check(tmp_path, src, cfg, state, listing)
    finally:
        proxy.shutdown()
        proxy.server_close()


@pytest.fixture
def sshd_for_nobody():
    """OpenSSH's sshd (as tests/servers.py starts it) whose keys live in a folder every user
    can read: sshd reads AuthorizedKeysFile as the user logging in, and the session
    fixture's is under pytest's 0700 temporary folder. Yields (server, share folder)."""
    import servers as S

    if os.geteuid() != 0:
        pytest.skip("needs root to hand the folder to another login user")
    if not S.SSHD.exists():
        pytest.fail(f"{S.SSHD} is missing; run scripts/bootstrap (it installs openssh-server)")
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="axro."))
    base.chmod(0o755)
    share = base / "share"
    share.mkdir(mode=0o755)
    host_path, client_path, fingerprint, host_key = S._write_keys(base)
    keys = base / "authorized_keys"
    keys.write_text(Path(str(client_path) + ".pub").read_text())
    keys.chmod(0o644)
    port = S.free_port()
    config = base / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_path}", f"PidFile {base / 'sshd.pid'}",
        f"AuthorizedKeysFile {keys}", "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "UsePAM yes", "StrictModes no",
        "Subsystem sftp internal-sftp", "LogLevel VERBOSE"]) + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen([str(S.SSHD), "-D", "-f", str(config), "-E", str(base / "sshd.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        S.wait_for_port(port, proc=proc)
        known = S._known_hosts(base, port, host_key)
        yield S.SFTPServer("127.0.0.1", port, "nobody", share, str(share), client_path, known, fingerprint,
                           lambda: None), share
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_sftp_folder_the_user_may_not_write(sshd_for_nobody, tmp_path):
    server, share = sshd_for_nobody
    loc = remote_config("sftp", server)
    folder = share / loc.path_prefix.removeprefix(str(share)).strip("/")
    folder.mkdir(mode=0o755)
    os.chown(folder, F.NOBODY, F.NOBODY)
    src, cfg, state = _site(tmp_path, loc)  # written as nobody, the folder's owner
    for p in [folder, *folder.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)  # now the owner may read, not write

    def listing():
        return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))

    _check(tmp_path, src, cfg, state, listing)
