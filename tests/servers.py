"""Real storage servers for tests, started by the tests themselves (session-scoped).

- moto's S3 server in a thread (``moto_s3``): speaks the real S3 protocol over HTTP;
  ``moto.mock_aws`` does not work with aiobotocore, the server does.
- asyncssh's SFTP server on its own event loop thread (``asyncssh_sftp``).
- OpenSSH's sshd on a free port with its own config and keys (``openssh_sftp``).
- Azurite (node) from tests/emulators (``azurite``).
- pyftpdlib in a thread (``ftp_server``).

Import the fixtures into a conftest (``from servers import *``) or a test module. Each
yields a small frozen value with what a client needs, and helpers here turn it into a
RemoteStorageConfig so tests go through the same factory as the program.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import RemoteStorageConfig
from proc_support import stop_process
from sshd_support import SSHD, start_sshd

ROOT = Path(__file__).resolve().parent.parent
EMULATORS = ROOT / "tests" / "emulators"

# Azurite's published development account (documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

__all__ = [
    "AzuriteServer",
    "FTPServer",
    "S3Server",
    "SFTPServer",
    "asyncssh_sftp",
    "azurite",
    "free_port",
    "ftp_server",
    "ftps_server",
    "moto_s3",
    "openssh_sftp",
    "openssh_sftp_nobody",
    "openssh_serve",
    "listen_serve",
    "ServeServer",
    "remote_config",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------- S3 (moto)


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    credentials_file: Path


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    creds = tmp_path_factory.mktemp("s3") / "credentials"
    # moto accepts any keys; a file proves the credentials_file path is what is used.
    creds.write_text("[default]\naws_access_key_id = AKIATESTKEY\naws_secret_access_key = test-secret-key\n")
    creds.chmod(0o600)
    try:
        yield S3Server(f"http://{host}:{port}", creds)
    finally:
        server.stop()


# --------------------------------------------------------------------------- SFTP


@dataclass(frozen=True)
class SFTPServer:
    host: str
    port: int
    username: str
    root: Path  # where path_prefix starts (a chroot for asyncssh, a real dir for OpenSSH)
    prefix_base: str  # path_prefix for the root as the client sees it
    key_file: Path
    known_hosts: Path
    fingerprint: str
    # Cuts every open client connection from the server side (a dropped network).
    drop_connections: Callable[[], None]


class _LoopThread:
    """An event loop on its own thread, so a session-long server outlives each test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def _append_key(folder: Path) -> tuple[Path, str]:
    """A second client key (the backed-up host's): its private key file and public line."""
    import asyncssh

    key = asyncssh.generate_private_key("ssh-ed25519")
    path = folder / "append_key"
    key.write_private_key(str(path))
    path.chmod(0o600)
    return path, key.export_public_key().decode().strip()


def _write_keys(folder: Path) -> tuple[Path, Path, str, object]:
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    host_path, client_path = folder / "host_key", folder / "client_key"
    host_key.write_private_key(str(host_path))
    host_key.write_public_key(str(host_path) + ".pub")
    client_key.write_private_key(str(client_path))
    client_key.write_public_key(str(client_path) + ".pub")
    for p in (host_path, client_path):
        p.chmod(0o600)
    return host_path, client_path, host_key.get_fingerprint("sha256"), host_key


def _known_hosts(folder: Path, port: int, host_key) -> Path:
    path = folder / "known_hosts"
    path.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n")
    return path


@pytest.fixture(scope="session")
def asyncssh_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SFTPServer]:
    import asyncssh

    base = tmp_path_factory.mktemp("asyncssh")
    root = base / "root"
    root.mkdir()
    host_path, client_path, fingerprint, host_key = _write_keys(base)
    authorized = asyncssh.read_authorized_keys(str(client_path) + ".pub")
    lt = _LoopThread()
    live: set = set()

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn) -> None:
            self.conn = conn
            live.add(conn)

        def connection_lost(self, exc) -> None:
            live.discard(self.conn)

    def drop() -> None:
        async def abort_all() -> None:
            for conn in list(live):
                conn.abort()

        lt.run(abort_all())

    async def start():
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_factory=Server,
            server_host_keys=[str(host_path)],
            authorized_client_keys=authorized,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(root).encode()),
            allow_scp=False,
        )

    server = lt.run(start())
    port = server.sockets[0].getsockname()[1]
    known = _known_hosts(base, port, host_key)
    try:
        yield SFTPServer("127.0.0.1", port, "tester", root, "", client_path, known, fingerprint, drop)
    finally:
        server.close()
        lt.stop()


@contextmanager
def _sshd(base: Path, authorized: str, extra: tuple[str, ...] = ()) -> Iterator[tuple[int, Callable[[], None]]]:
    """OpenSSH's sshd on a free port of 127.0.0.1 with ``authorized`` as its authorized_keys
    (0644: sshd reads it as the user logging in) and ``extra`` config lines; yields (port,
    drop every open connection)."""
    if not SSHD.exists():
        pytest.fail(f"{SSHD} is missing; run scripts/bootstrap (it installs openssh-server)")
    (base / "authorized_keys").write_text(authorized)
    (base / "authorized_keys").chmod(0o644)
    port = free_port()
    proc = start_sshd(base, port, extra=extra)
    try:
        try:
            wait_for_port(port, proc=proc)
        except RuntimeError as exc:
            log = (base / "sshd.log").read_text() if (base / "sshd.log").exists() else ""
            raise RuntimeError(f"{exc}; sshd.log: {log[-2000:]}") from None

        def drop() -> None:
            # sshd forks a process (pair) per connection; killing them is a cut connection.
            for pid in _descendants(proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        yield port, drop
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def openssh_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SFTPServer]:
    base = tmp_path_factory.mktemp("openssh")
    root = base / "root"
    root.mkdir()
    host_path, client_path, fingerprint, host_key = _write_keys(base)
    with _sshd(base, Path(str(client_path) + ".pub").read_text()) as (port, drop):
        known = _known_hosts(base, port, host_key)
        yield SFTPServer("127.0.0.1", port, getpass.getuser(), root, str(root), client_path, known, fingerprint, drop)


@dataclass(frozen=True)
class ServeServer:
    """OpenSSH whose keys reach only `axisor-backup serve` (forced commands) on ``root``: a
    trusted host's key (full access) and a backed-up host's key (``--append-only``)."""

    host: str
    port: int
    username: str
    root: Path
    key_file: Path  # the trusted host's: serve --path root
    append_key_file: Path  # the backed-up host's: serve --append-only --path root
    known_hosts: Path
    drop_connections: Callable[[], None]


@pytest.fixture(scope="session")
def openssh_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeServer]:

    base = tmp_path_factory.mktemp("openssh-serve")
    root = base / "root"
    root.mkdir()
    _, client_path, _, host_key = _write_keys(base)
    append_path, append_pub = _append_key(base)
    program = Path(sys.executable).parent / "axisor-backup"
    forced = f"{program} serve --stdio --path {root}"
    authorized = (
        f'command="{forced}",restrict {Path(str(client_path) + ".pub").read_text().strip()}\n'
        f'command="{forced} --append-only",restrict {append_pub}\n'
    )
    with _sshd(base, authorized) as (port, drop):
        known = _known_hosts(base, port, host_key)
        yield ServeServer("127.0.0.1", port, getpass.getuser(), root, client_path, append_path, known, drop)


@pytest.fixture(scope="session")
def listen_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeServer]:
    """`axisor-backup serve --listen` (its own asyncssh server) on ``root``: the trusted key
    in --trusted-keys, the backed-up host's in --authorized-keys (append-only)."""

    base = tmp_path_factory.mktemp("listen-serve")
    root = base / "root"
    root.mkdir()
    host_path, client_path, _, host_key = _write_keys(base)
    append_path, append_pub = _append_key(base)
    (base / "append.pub").write_text(append_pub + "\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--path",
            str(root),
            "--host-key",
            str(host_path),
            "--authorized-keys",
            str(base / "append.pub"),
            "--trusted-keys",
            str(client_path) + ".pub",
        ],
        cwd=Path(__file__).resolve().parents[1],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(base / "serve.log", "wb"),  # noqa: SIM115 - the child holds it
    )
    try:
        try:
            wait_for_port(port, proc=proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; serve.log: {(base / 'serve.log').read_text()[-2000:]}") from None
        known = _known_hosts(base, port, host_key)

        def drop() -> None:
            proc.send_signal(signal.SIGKILL)

        yield ServeServer("127.0.0.1", port, getpass.getuser(), root, client_path, append_path, known, drop)
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def openssh_sftp_nobody() -> Iterator[SFTPServer]:
    """OpenSSH's sshd logged into as ``nobody`` (root runs only): the login's file modes
    count, as for any user but root (who reads a mode-000 file). Its keys live in a folder
    every user can read: sshd reads AuthorizedKeysFile as the user logging in, and pytest's
    temporary root is 0700. ``root`` is a folder owned by root, mode 0755: a test makes its
    location below it and hands it to nobody (uid 65534)."""
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("needs root to log in as another user")
    if not SSHD.exists():
        pytest.fail(f"{SSHD} is missing; run scripts/bootstrap (it installs openssh-server)")
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="axsftp-nobody."))
    base.chmod(0o755)
    share = base / "share"
    share.mkdir(mode=0o755)
    _, client_path, fingerprint, host_key = _write_keys(base)
    # AES-GCM, not the client's first choice ChaCha20: asyncssh makes a new ChaCha20 context
    # per packet, about a tenth of the client's CPU in the fault matrix's cells.
    try:
        with _sshd(base, Path(str(client_path) + ".pub").read_text(), ("Ciphers aes128-gcm@openssh.com",)) as (
            port,
            drop,
        ):
            known = _known_hosts(base, port, host_key)
            yield SFTPServer("127.0.0.1", port, "nobody", share, str(share), client_path, known, fingerprint, drop)
    finally:
        # A test may leave folders of mode 0555 or files of mode 000 behind: root removes them anyway.
        shutil.rmtree(base, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


# --------------------------------------------------------------------------- Azure


@dataclass(frozen=True)
class AzuriteServer:
    endpoint: str
    credentials_file: Path
    connection_string: str


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    node = shutil.which("node")
    script = EMULATORS / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    if node is None:
        pytest.fail("node is missing; Azurite needs node >= 18 (scripts/bootstrap)")
    if not script.exists():
        pytest.fail(f"Azurite is not installed; run: cd {EMULATORS} && npm ci")
    base = tmp_path_factory.mktemp("azurite")
    port = free_port()
    proc = subprocess.Popen(
        [
            node,
            str(script),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--inMemoryPersistence",
        ],
        cwd=base,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30, proc=proc)
        endpoint = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
        conn = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        )
        creds = base / "azure-credentials"
        creds.write_text(conn + "\n")
        creds.chmod(0o600)
        yield AzuriteServer(endpoint, creds, conn)
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- FTP


@dataclass(frozen=True)
class FTPServer:
    host: str
    port: int
    username: str
    credentials_file: Path
    root: Path
    ca_bundle: Path | None = None  # FTPS: the server's self-signed certificate
    # Another login, same password and root, that may list and read but not write, make
    # folders, rename or delete (pyftpdlib answers those "550 Not enough privileges.").
    read_only_username: str = "axisor-ro"


def _self_signed(base: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with cryptography."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = base / "ftps-cert.pem", base / "ftps-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FTPServer]:
    yield from _ftp(tmp_path_factory, tls=False)


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FTPServer]:
    """pyftpdlib with explicit TLS required on control and data connections."""
    yield from _ftp(tmp_path_factory, tls=True)


def _ftp(tmp_path_factory: pytest.TempPathFactory, *, tls: bool) -> Iterator[FTPServer]:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
    base = tmp_path_factory.mktemp("ftps" if tls else "ftp")
    root = base / "root"
    root.mkdir()
    password = uuid.uuid4().hex
    authorizer = DummyAuthorizer()
    authorizer.add_user("axisor", password, str(root), perm="elradfmwMT")
    authorizer.add_user("axisor-ro", password, str(root), perm="elr")

    cert = None
    if tls:
        cert, key = _self_signed(base)

        class Handler(TLS_FTPHandler):  # type: ignore[no-redef]
            pass

        Handler.certfile = str(cert)
        Handler.keyfile = str(key)
        Handler.tls_control_required = True
        Handler.tls_data_required = True
    else:

        class Handler(FTPHandler):  # type: ignore[no-redef]
            pass

    Handler.authorizer = authorizer
    Handler.passive_ports = None
    server = ThreadedFTPServer(("127.0.0.1", 0), Handler)
    server.max_cons = 64
    port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.2, "handle_exit": False}, daemon=True)
    thread.start()
    creds = base / "ftp-credentials"
    creds.write_text(f"password = {password}\n")
    creds.chmod(0o600)
    try:
        yield FTPServer("127.0.0.1", port, "axisor", creds, root, cert)
    finally:
        server.close_all()
        thread.join(10)


# --------------------------------------------------------------------------- configs


def remote_config(kind: str, server, **extra) -> RemoteStorageConfig:
    """A RemoteStorageConfig for a fresh, empty location on ``server`` (a fixture value)."""
    name = _unique(kind.replace("_", "-"))
    if kind in ("s3", "gcs"):
        return RemoteStorageConfig(
            provider="aws-s3" if kind == "s3" else "gcp-storage",
            name=name,
            bucket_name=name,
            endpoint=server.endpoint,
            region="us-east-1",
            path_prefix=extra.pop("path_prefix", "repo"),
            credentials_file=server.credentials_file,
            allow_insecure=extra.pop("allow_insecure", True),  # the test server speaks http://
            **extra,
        )
    if kind == "sftp":
        base = server.prefix_base
        return RemoteStorageConfig(
            provider="sftp",
            name=name,
            endpoint=f"{server.host}:{server.port}",
            username=server.username,
            key_file=server.key_file,
            known_hosts=extra.pop("known_hosts", server.known_hosts),
            path_prefix=f"{base}/{name}" if base else name,
            **extra,
        )
    if kind == "azure":
        return RemoteStorageConfig(
            provider="azure-blob",
            name=name,
            bucket_name=name,
            endpoint=server.endpoint,
            path_prefix="repo",
            credentials_file=server.credentials_file,
            allow_insecure=extra.pop("allow_insecure", True),  # Azurite speaks http://
            **extra,
        )
    if kind in ("ssh", "ssh-append"):
        return RemoteStorageConfig(
            provider="ssh",
            name=name,
            endpoint=f"{server.host}:{server.port}",
            username=server.username,
            key_file=extra.pop("key_file", server.append_key_file if kind == "ssh-append" else server.key_file),
            known_hosts=server.known_hosts,
            path_prefix=extra.pop("path_prefix", name),
            **extra,
        )
    if kind in ("ftp", "ftps"):
        if kind == "ftps":
            extra.setdefault("ca_bundle", server.ca_bundle)
        return RemoteStorageConfig(
            provider="ftp",
            name=name,
            endpoint=f"{kind}://{server.host}:{server.port}",
            username=server.username,
            credentials_file=server.credentials_file,
            path_prefix=f"/{name}",
            allow_insecure=extra.pop("allow_insecure", kind == "ftp"),
            **extra,
        )
    raise ValueError(kind)
