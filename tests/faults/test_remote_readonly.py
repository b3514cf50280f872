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
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fault_support as F
from locations_support import remote_fields, remote_toml
from servers import azurite, ftp_server, moto_s3, openssh_sftp_nobody, remote_config  # noqa: F401  (fixtures)

NOTE = "note: no lock taken because the storage refuses writes"
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>'
)


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
    for args in (
        ("ls", "latest", "--from", "vault"),
        ("verify", "--from", "vault"),
        ("restore", "latest", "--from", "vault", "--target", str(tmp_path / "out")),
    ):
        r = F.cli(cfg, state, *args)
        assert r.code == 0, r
        notes = [line for line in r.err.splitlines() if line.startswith("note: no lock taken")]
        assert len(notes) == 1 and notes[0].startswith(NOTE), r
        assert "Traceback" not in r.err, r
    out = tmp_path / "out" / str(src).lstrip("/")
    assert (out / "docs" / "a.txt").read_text() == "alpha\n" * 100
    assert (out / "b.bin").read_bytes() == bytes(range(256)) * 64
    for args in (
        ("repair", "index", "--location", "vault"),
        ("repair", "snapshots", "--location", "vault"),
        ("copy", "--from", "local", "--to", "vault"),
    ):
        r = F.cli(cfg, state, *args)
        assert r.code == 24, r
        assert "refuses writes" in r.err and "Traceback" not in r.err, r
    assert listing() == before, "a command wrote to the read-only location"


def test_s3_read_only_credential(moto_s3, tmp_path):  # noqa: F811
    loc = remote_config("s3", moto_s3)
    src, cfg, state = _site(tmp_path, loc)
    proxy, endpoint = _read_only_proxy(moto_s3.endpoint)
    try:
        cfg.write_text(
            F._config_text(
                tmp_path / "repo", src, remote_toml("vault", **remote_fields(replace(loc, endpoint=endpoint)))
            )
        )
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=moto_s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id="AKIATESTKEY",
            aws_secret_access_key="test-secret-key",
        )

        def listing():
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket_name)
            return sorted((o["Key"], o["Size"]) for page in pages for o in page.get("Contents", []))

        _check(tmp_path, src, cfg, state, listing)
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_sftp_folder_the_user_may_not_write(openssh_sftp_nobody, tmp_path):  # noqa: F811
    server, share = openssh_sftp_nobody, openssh_sftp_nobody.root
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


def test_ftp_read_only_login(ftp_server, tmp_path):  # noqa: F811
    """pyftpdlib's read-only login (list and read only): STOR, MKD, RNTO and DELE are
    answered "550 Not enough privileges.", which is a refusal of writes, not a missing file."""
    loc = remote_config("ftp", ftp_server)
    src, cfg, state = _site(tmp_path, loc)  # written by the login that may write
    reader = replace(loc, username=ftp_server.read_only_username)
    cfg.write_text(F._config_text(tmp_path / "repo", src, remote_toml("vault", **remote_fields(reader))))
    folder = ftp_server.root / loc.path_prefix.strip("/")

    def listing():
        return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*"))

    _check(tmp_path, src, cfg, state, listing)


def test_azure_read_only_sas(azurite, tmp_path):  # noqa: F811
    """Azurite with a container SAS that may read and list only: every write is answered
    403 AuthorizationPermissionMismatch."""
    import datetime as dt

    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

    from servers import AZURITE_ACCOUNT, AZURITE_KEY

    loc = remote_config("azure", azurite)
    src, cfg, state = _site(tmp_path, loc)
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        loc.bucket_name,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    creds = tmp_path / "read-only-sas"
    creds.write_text(f"BlobEndpoint={azurite.endpoint};SharedAccessSignature={sas}\n")
    creds.chmod(0o600)
    reader = replace(loc, credentials_file=creds)
    cfg.write_text(F._config_text(tmp_path / "repo", src, remote_toml("vault", **remote_fields(reader))))
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        loc.bucket_name
    )

    def listing():
        return sorted((b.name, b.size) for b in container.list_blobs())

    _check(tmp_path, src, cfg, state, listing)
