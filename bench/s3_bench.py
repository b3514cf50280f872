"""Backup to and restore from the S3 test server: axisor-backup against restic (issue 4).

moto runs as its own process (a fresh one per tool and round, so neither tool meets the
other's objects and moto's memory is never counted against ours). Rounds alternate the
tools. Each step's wall time, CPU and peak RSS come from GNU time (bench/run.py's
run_timed); every restore is compared with the source by SHA-256.

axisor-backup's primary location is always a local folder: its "backup to S3" is a
backup into the local primary that then copies the new packs to the S3 location (one
process, one command); its restore reads from S3 (`restore --from s3`). restic writes
straight to `s3:` and reads back from it.

    .venv/bin/python bench/s3_bench.py [--data DIR] [--rounds 3] [--tools axisor,restic]
    .venv/bin/python bench/s3_bench.py --memory 200,600   # peak RSS vs size, backup and copy --to

Results: a Markdown table on stdout, raw JSON in bench/results/s3-<UTC timestamp>.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import remote  # noqa: E402  (the rounds, steps, tables and JSON shared with sftp_bench.py)
from remote import AXISOR, PY, axisor_config, axisor_env, step  # noqa: E402
from proc_support import stop_process  # noqa: E402  (tests/, on the path through remote)

KEYS = {"AWS_ACCESS_KEY_ID": "bench-key", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"}


class Moto:
    """moto's S3 in server mode as a separate process, with a fresh bucket name per start."""

    name = "s3"

    def __init__(self, work: Path) -> None:
        self.port = remote.free_port()
        log = work / "moto.log"
        self.log = log.open("ab")
        self.bucket = f"bench-{uuid.uuid4().hex[:8]}"
        self.proc = subprocess.Popen(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        remote.wait_for_port(self.port, self.proc, log)

    def cpu(self) -> float:
        """moto's user+sys CPU seconds so far: what the server spent serving the tool."""
        return remote.proc_cpu(self.proc.pid)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def axisor_location(self, bucket: str | None = None) -> str:
        return (
            f'provider = "aws-s3"\nname = "{self.name}"\nbucket_name = "{bucket or self.bucket}"\n'
            f'endpoint = "{self.endpoint}"\nregion = "us-east-1"\n'
            "allow_insecure = true\n"  # moto speaks http:// (refused without it since the TLS check)
        )

    def restic_repository(self) -> str:
        return f"s3:{self.endpoint}/{self.bucket}"

    def restic_options(self) -> list[str]:
        return []

    def env(self) -> dict:
        return dict(KEYS)

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()


def measure_memory(sizes_mb: list[int], work_root: Path) -> list[dict]:
    """Peak RSS of `backup` (primary + copy to S3) and of `copy --to` S3 at each data size:
    incompressible files of 50 MiB, so every byte is a new chunk that crosses the wire."""
    import blake3

    out = []
    for size in sizes_mb:
        work = work_root / f"mem-{size}"
        shutil.rmtree(work, ignore_errors=True)
        src = work / "src"
        src.mkdir(parents=True)
        h = blake3.blake3(f"s3-mem-{size}".encode())
        piece = 50 * 1024 * 1024
        for i in range(max(1, size // 50)):
            (src / f"f{i:03d}.bin").write_bytes(h.digest(length=piece, seek=i * piece))
        moto = Moto(work)
        env = axisor_env(work, moto)
        try:
            cfg = str(axisor_config(work, str(src), moto.axisor_location(f"mem-b-{uuid.uuid4().hex[:8]}")))
            step([AXISOR, "--config", cfg, "init"], env, work / "steps.log")
            backup = step([AXISOR, "--config", cfg, "backup"], env, work / "steps.log")
            # A second, empty bucket: the whole repository goes over again, by copy alone.
            cfg2 = str(axisor_config(work, str(src), moto.axisor_location(f"mem-c-{uuid.uuid4().hex[:8]}")))
            copy = step([AXISOR, "--config", cfg2, "copy", "--to", "s3"], env, work / "steps.log")
        finally:
            moto.stop()
        out.append({"size_mib": size, "backup": backup, "copy": copy})
        print(json.dumps(out[-1]), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = remote.arguments(__doc__, "/work/bench-work/s3")
    ap.add_argument("--memory", help="instead: peak RSS of backup and copy --to at these sizes in MiB, e.g. 200,600")
    a = ap.parse_args()
    if a.memory:
        a.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        mem = measure_memory([int(x) for x in a.memory.split(",")], a.work)
        path = a.out / f"s3-memory-{stamp}.json"
        path.write_text(json.dumps({"kind": "s3-memory", "runs": mem}, indent=1) + "\n")
        print(f"raw results: {path}")
        return 0
    return remote.main(a, "s3", Moto, "moto", {})


if __name__ == "__main__":
    sys.exit(main())
