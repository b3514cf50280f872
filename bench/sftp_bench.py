"""Backup to and restore from an SFTP server (OpenSSH): axisor-backup against restic (issue 19).

OpenSSH's sshd runs on a free port of 127.0.0.1 with its own config, host key and client
key (as tests/servers.py starts it: public keys only, `Subsystem sftp internal-sftp`), a
fresh one per tool and round, so neither tool meets the other's files and the server's
work is never in our figures (its CPU is reported apart: the listener's reaped children,
i.e. the per-connection sshd-session processes that ran internal-sftp). Rounds alternate
the tools. Each step's wall time, CPU and peak RSS come from GNU time (bench/run.py's
run_timed); every restore is compared with the source by SHA-256.

axisor-backup's primary location is always a local folder: its "backup to SFTP" is a
backup into the local primary that then copies the new packs to an `sftp` location
(asyncssh, `concurrency` 4: the default) in the same command; its restore reads from the
SFTP location (`restore latest --from sftp`). restic writes straight to `sftp:` and reads
back from it, through OpenSSH's ssh client (`-o sftp.command=...`), against the same
server set-up.

    .venv/bin/python bench/sftp_bench.py [--data DIR] [--rounds 3] [--tools axisor,restic]
    .venv/bin/python bench/sftp_bench.py --data /work/bench-data/scale-0.05 --rounds 1   # smoke (~30 s)

Needs restic (bench/setup.sh), GNU time, /usr/sbin/sshd and ssh-keygen (scripts/bootstrap
installs openssh-server). Results: a Markdown table on stdout, raw JSON in
bench/results/sftp-<UTC timestamp>.json. The rounds, steps and tables are bench/remote.py's.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import remote  # noqa: E402
from proc_support import stop_process  # noqa: E402  (tests/, on the path through remote)
from sshd_support import SSHD, start_sshd  # noqa: E402


class OpenSSH:
    """OpenSSH's sshd as its own process, serving SFTP under `work/root`."""

    name = "sftp"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "root"
        self.root.mkdir()
        self.user = getpass.getuser()
        self.key = work / "client_key"
        for path in (work / "host_key", self.key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, stdin=subprocess.DEVNULL
            )
        (work / "authorized_keys").write_text((work / "client_key.pub").read_text())
        self.port = remote.free_port()
        self.known_hosts = work / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {(work / 'host_key.pub').read_text().strip()}\n")
        self.proc = start_sshd(work, self.port, log_level="INFO")
        remote.wait_for_port(self.port, self.proc, work / "sshd.log")

    def cpu(self) -> float:
        """The listener's CPU and that of the per-connection processes it has reaped."""
        return remote.proc_cpu(self.proc.pid)

    def axisor_location(self) -> str:
        return (
            f'provider = "sftp"\nname = "{self.name}"\nendpoint = "127.0.0.1:{self.port}"\n'
            f'username = "{self.user}"\nkey_file = "{self.key}"\nknown_hosts = "{self.known_hosts}"\n'
            f'path_prefix = "{self.root}/axisor"\n'
        )

    def restic_repository(self) -> str:
        return f"sftp:{self.user}@127.0.0.1:{self.root}/restic"

    def restic_options(self) -> list[str]:
        ssh = (
            f"ssh -p {self.port} -i {self.key} -o UserKnownHostsFile={self.known_hosts} "
            f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes {self.user}@127.0.0.1 -s sftp"
        )
        return ["-o", f"sftp.command={ssh}"]

    def env(self) -> dict:
        return {}

    def stop(self) -> None:
        stop_process(self.proc)


def main() -> int:
    ap = remote.arguments(__doc__, "/work/bench-work/sftp")
    a = ap.parse_args()
    if not os.access(SSHD, os.X_OK):
        raise SystemExit(f"{SSHD} is missing: scripts/bootstrap installs openssh-server")
    version = subprocess.run([SSHD, "-V"], capture_output=True, text=True).stderr.strip()
    return remote.main(a, "sftp", OpenSSH, "sshd", {"sshd": version})


if __name__ == "__main__":
    sys.exit(main())
