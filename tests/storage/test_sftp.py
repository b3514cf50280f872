"""SFTP specifics on both real servers (asyncssh's and OpenSSH's sshd): host key trust,
authentication failures, temp files, and reconnecting after the server drops us."""

from __future__ import annotations

import dataclasses

import pytest

from core.storage.backend import StorageError
from core.storage.factory import open_backend
from core.storage.sftp import HostKeyRefused, parse_endpoint
from servers import remote_config


@pytest.fixture(params=["asyncssh_sftp", "openssh_sftp"])
def server(request):
    return request.getfixturevalue(request.param)


async def test_unknown_host_refused_with_its_fingerprint(server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    b = open_backend(remote_config("sftp", server, known_hosts=empty))
    try:
        with pytest.raises(HostKeyRefused) as info:
            await b.create()
    finally:
        await b.close()
    message = str(info.value)
    assert server.fingerprint in message
    assert f'host_key_fingerprint = "{server.fingerprint}"' in message
    assert b.retried == 0  # a distrusted server stays distrusted


async def test_pinned_fingerprint_instead_of_known_hosts(server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    good = open_backend(remote_config("sftp", server, known_hosts=empty, host_key_fingerprint=server.fingerprint))
    wrong = open_backend(remote_config("sftp", server, known_hosts=empty, host_key_fingerprint="SHA256:" + "A" * 43))
    try:
        await good.create()
        await good.put("config", b"pinned")
        assert await good.get("config") == b"pinned"
        with pytest.raises(HostKeyRefused) as info:
            await wrong.create()
        assert server.fingerprint in str(info.value)
    finally:
        await good.close()
        await wrong.close()


async def test_wrong_key_is_refused_clearly(server, tmp_path):
    import asyncssh

    other = tmp_path / "other_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(other))
    b = open_backend(dataclasses.replace(remote_config("sftp", server), key_file=other))
    try:
        with pytest.raises(StorageError, match="login refused"):
            await b.create()
    finally:
        await b.close()
    assert b.retried == 0


async def test_reconnects_after_the_server_drops_the_connection(server):
    b = open_backend(remote_config("sftp", server))
    try:
        await b.create()
        await b.put("data/aa/one", b"before the drop")
        server.drop_connections()
        assert await b.get("data/aa/one") == b"before the drop"
        await b.put("data/aa/two", b"after the drop")
        server.drop_connections()
        assert [i.key async for i in b.list("data/")] == ["data/aa/one", "data/aa/two"]
        assert b.retried >= 2
    finally:
        await b.close()


async def test_temp_files_are_invisible_and_cleaned_up(server):
    loc = remote_config("sftp", server)
    b = open_backend(loc)
    try:
        await b.create()
        await b.put("index/i1", b"one")
        with pytest.raises(Exception):
            await b.put("index/i1", b"two")
        folder = server.root / loc.name / "index"
        assert sorted(p.name for p in folder.iterdir()) == ["i1"]  # the loser's temp file is gone
        (folder / ".tmp-crashed-writer").write_bytes(b"half")
        assert [i.key async for i in b.list("index/")] == ["index/i1"]
    finally:
        await b.close()


def test_endpoint_forms():
    assert parse_endpoint("backup.example", 22) == ("backup.example", 22, None, "")
    assert parse_endpoint("backup.example:2222", 22) == ("backup.example", 2222, None, "")
    assert parse_endpoint("sftp://axisor@[::1]:2200/srv/b", 22) == ("::1", 2200, "axisor", "/srv/b")
    with pytest.raises(StorageError):
        parse_endpoint("host:notaport", 22)


async def test_agent_authentication_without_a_key_file(asyncssh_sftp, tmp_path, monkeypatch):
    import shutil
    import subprocess
    import time

    agent, add = shutil.which("ssh-agent"), shutil.which("ssh-add")
    assert agent and add, "openssh-client (ssh-agent, ssh-add) is needed"
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen([agent, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.02)
        env = {"SSH_AUTH_SOCK": str(sock), "PATH": "/usr/bin:/bin"}
        subprocess.run([add, str(asyncssh_sftp.key_file)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys: only the agent can log in
        b = open_backend(dataclasses.replace(remote_config("sftp", asyncssh_sftp), key_file=None))
        try:
            await b.create()
            await b.put("config", b"via agent")
            assert await b.get("config") == b"via agent"
        finally:
            await b.close()
    finally:
        proc.terminate()
        proc.wait(10)
