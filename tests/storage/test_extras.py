"""The storage SDKs are extras (`axisor-backup[s3]`, `[azure]`, `[ftp]`): a host without
them backs up to local storage as before, and a location that needs a missing one is
refused by name, with the install line, never with an ImportError traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import PASSPHRASE, ROOT

SDKS = ("aiobotocore", "botocore", "azure", "aioftp")


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    # The SDKs are made unimportable in the child, as on a base install.
    code = (
        "import sys\n"
        f"for m in {SDKS!r}: sys.modules[m] = None\n"
        "from app.cli import main\n"
        "code = main()\n"
        f"loaded = [m for m in sys.modules if m.split('.')[0] in {SDKS!r} and sys.modules[m] is not None]\n"
        "assert not loaded, loaded\n"
        "sys.exit(code)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AXISOR_BACKUP")}
    env["AXISOR_BACKUP_PASSPHRASE"] = PASSPHRASE
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(config), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_base_install_backs_up_locally_and_names_the_missing_extra(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("hello\n")
    config = tmp_path / "config.toml"
    config.write_text(f"""[application]
user_data = ["{src}"]
[storage]
local_path = "{tmp_path / "repo"}"
[[storage.remote_storage]]
name = "offsite"
provider = "aws-s3"
bucket_name = "backups"
[[storage.remote_storage]]
name = "ftpbox"
provider = "ftp"
endpoint = "ftps://ftp.example.org"
[engine]
state_dir = "{tmp_path / "state"}"
""")
    r = _cli(config, "config", "check")
    assert r.returncode == 2, r.stderr
    assert "storage.remote_storage[0].provider: 'aws-s3' needs the optional 's3' support" in r.stdout + r.stderr
    assert "pip install 'axisor-backup[s3]'" in r.stdout + r.stderr
    assert "storage.remote_storage[1].provider: 'ftp' needs the optional 'ftp' support" in r.stdout + r.stderr

    assert _cli(config, "init").returncode == 0
    r = _cli(config, "backup", "--no-copy") if False else _cli(config, "backup")
    # The local snapshot is committed; each copy names the extra it lacks (a warning, exit 0).
    assert r.returncode == 0, r.stderr
    assert "not copied to location offsite" in r.stderr and "axisor-backup[s3]" in r.stderr
    assert "Traceback" not in r.stderr

    r = _cli(config, "copy", "--to", "offsite")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "location 'offsite' (provider aws-s3) needs the optional 's3' support" in r.stderr
    assert _cli(config, "snapshots").returncode == 0
