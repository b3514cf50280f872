"""A restore job takes the attribute options a terminal restore takes, but never the two
that only root at the terminal may choose (it is submitted through the daemon's socket)."""

from __future__ import annotations

import os

from conftest import PASSPHRASE
from core.config import load_config
from core.jobs.api import JobState
from core.jobs.engine import Engine


async def test_restore_job_options(jw):
    jw.config()
    f = jw.ws.src / "noted.txt"
    f.write_text("with a note\n")
    os.setxattr(f, "user.note", b"kept")
    engine = Engine(load_config(jw.ws.config), lambda confirm: PASSPHRASE, directory=jw.state, workers=2)
    await engine.start()
    try:
        assert (await engine.wait((await engine.submit("backup", {})).id)).state == JobState.COMPLETED
        dest = lambda target: target / str(f).lstrip("/")  # noqa: E731

        plain = jw.ws.root / "plain"
        job = await engine.wait((await engine.submit("restore", {"target": str(plain)})).id)
        assert job.state == JobState.COMPLETED, job.error
        assert os.getxattr(dest(plain), "user.note") == b"kept"

        bare = jw.ws.root / "bare"
        job = await engine.wait((await engine.submit("restore", {"target": str(bare), "no_xattrs": True})).id)
        assert job.state == JobState.COMPLETED, job.error
        assert "user.note" not in os.listxattr(dest(bare))

        for refused in ("preserve_privileges", "allow_untrusted_target"):
            job = await engine.wait(
                (await engine.submit("restore", {"target": str(jw.ws.root / refused), refused: True})).id
            )
            assert job.state == JobState.FAILED and f"params.{refused} is not accepted" in job.error
            assert not (jw.ws.root / refused).exists()
    finally:
        await engine.close()
