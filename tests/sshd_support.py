"""OpenSSH's sshd started on a port of 127.0.0.1 with a config of its own: shared by the SFTP
test server (tests/servers.py) and the SFTP benchmark (bench/sftp_bench.py). Standard
library only, so the benchmark can import it without pytest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")


def start_sshd(base: Path, port: int, *, log_level: str = "VERBOSE", extra: tuple[str, ...] = ()) -> subprocess.Popen:
    """sshd in the foreground serving SFTP on ``port``, with ``base``'s host_key and
    authorized_keys, its config in ``base/sshd_config`` and its log in ``base/sshd.log``."""
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {base / 'host_key'}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {base / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                # Non-root runs have no privilege separation and cannot use PAM.
                f"UsePAM {'yes' if os.geteuid() == 0 else 'no'}",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                f"LogLevel {log_level}",
                *extra,
            ]
        )
        + "\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    return subprocess.Popen(
        [str(SSHD), "-D", "-f", str(config), "-E", str(base / "sshd.log")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
