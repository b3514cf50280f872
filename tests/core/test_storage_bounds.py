"""What storage hands a reader is bounded before it is trusted (docs/SECURITY.md).

A storage writer without the key can plant files. An object under data/ named like a pack
must not make every backup read it whole (1.1 GB RSS in one trial before the fix): it is
bounded by the largest pack this repository writes, its trailer and header (which a file
made without the key fails) are checked with ranged reads, a long claimed header is
authenticated in pieces, and a pack is hashed over ranged reads. What is not a pack of
this repository is named by the backup and by verify, and left alone.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess

import pytest

import hostile_support as H

axenv = H.axenv

MiB = 1024 * 1024


def _plant(env: H.AxEnv, size: int, *, tail: bytes = b"", name: str | None = None) -> str:
    """A sparse file of ``size`` bytes under data/, ending with ``tail``; returns its key."""
    name = name or os.urandom(32).hex()
    path = env.repo / "data" / name[:2] / name
    with open(path, "wb") as f:
        f.truncate(size)
        if tail:
            f.seek(size - len(tail))
            f.write(tail)
    return f"data/{name[:2]}/{name}"


def _measured(env: H.AxEnv) -> tuple[int, str, str, int]:
    """Run `backup --json` in a child: (exit code, stdout, stderr, its peak RSS in KiB)."""
    p = subprocess.Popen(env.argv("backup", json_out=True), cwd=H.ROOT, env=env.env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, out.decode(), err.decode(), usage.ru_maxrss


@pytest.fixture
def world(axenv):
    axenv.init_fast()
    (axenv.src / "a.txt").write_text("hello\n")
    (axenv.src / "b.bin").write_bytes(os.urandom(2 * MiB))
    code, _, err, rss = _measured(axenv)
    assert code == 0, err
    return axenv, rss


def test_junk_packs_are_named_and_never_read_whole(world):
    env, baseline = world
    from core.repository.repository import max_pack_bytes

    repo = env.run(env.open_repo())
    limit = max_pack_bytes(repo.config)
    huge = _plant(env, limit + 1)  # larger than any pack: not even opened
    plain = _plant(env, 300 * MiB)  # zeros: the trailer's magic is wrong
    # A forged trailer claiming a 250 MiB header: authenticated in pieces, never held whole.
    forged = _plant(env, 300 * MiB, tail=struct.pack("<I4s", 250 * MiB, b"AXP1"))
    (env.src / "c.txt").write_text("more\n")

    code, out, err, rss = _measured(env)
    assert code == 0, err
    for key in (huge, plain, forged):
        assert key in err, err
    assert "larger than any pack" in err and "not a pack of this repository" in err
    warned = json.loads(out)["warnings"]
    assert all(any(key in w for w in warned) for key in (huge, plain, forged)), warned
    # Flat: the 300 MiB and larger files cost no more than a few pieces of ranged reads.
    assert rss < baseline + 48 * 1024, (baseline, rss)

    # verify names them too (not as damage) and does not call them adoptable packs.
    r = env.cli("verify", json_out=True)
    assert r.code == 0, r
    assert set(r.json["foreign_packs"]) == {huge, plain, forged}
    assert not set(r.json["unreferenced_packs"]) & {huge, plain, forged}
    r = env.cli("verify")
    assert r.code == 0 and huge in r.stdout and "warning:" in r.stdout, r


def test_an_unindexed_pack_is_still_adopted_by_ranged_reads(world):
    """The real thing still works: a pack whose index file is lost is adopted (its bytes are
    hashed piece by piece against its name), one whose bytes changed is not."""
    env, _ = world
    for f in env.index_files():
        f.unlink()
    packs = env.packs()
    assert packs
    repo = env.run(env.open_repo())
    assert len(repo.index) == 0

    async def adopt():
        r = await env.open_repo()
        n = await r.adopt_unindexed_packs()
        return n, r.foreign_packs

    n, foreign = env.run(adopt())
    assert n == len(packs) and not foreign


def test_a_pack_whose_bytes_changed_is_not_adopted(world):
    env, _ = world
    for f in env.index_files():
        f.unlink()
    big = max(env.packs(), key=lambda p: p.stat().st_size)
    H.flip_byte(big, 100)  # a blob's bytes: the header still opens, the hash does not match

    async def adopt():
        r = await env.open_repo()
        n = await r.adopt_unindexed_packs()
        return n, r.foreign_packs, {p.hex() for p in r.index.pack_ids()}

    n, foreign, indexed = env.run(adopt())
    assert big.name not in indexed and not foreign
