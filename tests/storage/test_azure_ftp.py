"""Azure (Azurite) and FTP (pyftpdlib) specifics: block uploads, where credentials come
from, and login failures that never echo a secret."""

from __future__ import annotations

import dataclasses
import os

import pytest

from core.storage.azure import AzureBackend, load_credentials
from core.storage.backend import ObjectExists, StorageError
from core.storage.factory import open_backend
from core.storage.ftp import read_password
from servers import AZURITE_KEY, remote_config

MiB = 1024 * 1024


async def test_azure_block_upload_is_create_only(azurite):
    b = AzureBackend(
        f"blocks-{os.urandom(4).hex()}",
        endpoint=azurite.endpoint,
        credentials_file=azurite.credentials_file,
        max_single_put_size=1 * MiB,
        max_block_size=1 * MiB,
    )
    data = os.urandom(3 * MiB + 5)
    try:
        await b.create()
        await b.put("data/aa/big", data)  # staged blocks, one commit
        client = await b._container()
        blocks = await client.get_blob_client("data/aa/big").get_block_list()
        assert len(blocks[0]) == 4
        with pytest.raises(ObjectExists):
            await b.put("data/aa/big", os.urandom(2 * MiB))
        assert await b.get("data/aa/big") == data
    finally:
        await b.close()


async def test_azure_credentials_from_environment(azurite, tmp_path):
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    creds = load_credentials(None, None, "azure://c/", env)
    assert creds.account_url == azurite.endpoint
    assert AZURITE_KEY not in repr(creds)
    kv = tmp_path / "kv"
    kv.write_text(f"account_name = devstoreaccount1\naccount_key = {AZURITE_KEY}\n")
    kv.chmod(0o600)  # credentials files readable by others are refused
    creds = load_credentials(kv, azurite.endpoint, "azure://c/", {})
    assert creds.credential == {"account_name": "devstoreaccount1", "account_key": AZURITE_KEY}
    with pytest.raises(StorageError) as info:
        load_credentials(None, None, "azure://c/", {})
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(info.value)
    # A backend built from the environment works against the real emulator.
    os.environ["AZURE_STORAGE_CONNECTION_STRING"] = azurite.connection_string
    try:
        b = open_backend(dataclasses.replace(remote_config("azure", azurite), credentials_file=None))
        await b.create()
        await b.put("config", b"env")
        assert await b.get("config") == b"env"
        await b.close()
    finally:
        del os.environ["AZURE_STORAGE_CONNECTION_STRING"]


async def test_azure_wrong_key_fails_without_retry_or_echo(azurite, tmp_path):
    bad_key = "QmFkS2V5" * 11
    creds = tmp_path / "bad"
    creds.write_text(azurite.connection_string.replace(AZURITE_KEY, bad_key))
    creds.chmod(0o600)  # credentials files readable by others are refused
    b = open_backend(dataclasses.replace(remote_config("azure", azurite), credentials_file=creds))
    try:
        with pytest.raises(StorageError) as info:
            await b.create()
    finally:
        await b.close()
    assert "authentication failed" in str(info.value) or "access denied" in str(info.value)
    assert bad_key not in str(info.value)
    assert b.retried == 0


async def test_ftp_wrong_password_fails_without_retry_or_echo(ftp_server, tmp_path):
    creds = tmp_path / "ftp-bad"
    creds.write_text("password = not-the-password-123\n")
    creds.chmod(0o600)  # credentials files readable by others are refused
    b = open_backend(dataclasses.replace(remote_config("ftp", ftp_server), credentials_file=creds))
    try:
        with pytest.raises(StorageError) as info:
            await b.create()
    finally:
        await b.close()
    assert "login refused for axisor" in str(info.value)
    assert "not-the-password-123" not in str(info.value)
    assert b.retried == 0


async def test_ftp_temp_files_invisible(ftp_server):
    loc = remote_config("ftp", ftp_server)
    b = open_backend(loc)
    try:
        await b.create()
        await b.put("index/i1", b"one")
        folder = ftp_server.root / loc.name / "index"
        (folder / ".tmp-crashed-writer").write_bytes(b"half")
        assert [i.key async for i in b.list("index/")] == ["index/i1"]
        assert sorted(p.name for p in folder.iterdir()) == [".tmp-crashed-writer", "i1"]
    finally:
        await b.close()


def test_ftp_password_file_forms(tmp_path):
    a = tmp_path / "a"
    a.write_text("username = bob\npassword = s3cret\n")
    a.chmod(0o600)  # credentials files readable by others are refused
    assert read_password(a, "ftp://h") == ("bob", "s3cret")
    b = tmp_path / "b"
    b.write_text("just-the-password\n")
    b.chmod(0o600)  # credentials files readable by others are refused
    assert read_password(b, "ftp://h") == (None, "just-the-password")
    with pytest.raises(StorageError, match="does not exist"):
        read_password(tmp_path / "c", "ftp://h")


async def test_an_http_blob_endpoint_in_a_connection_string_is_refused_unless_allowed(tmp_path):
    from core.config import RemoteStorageConfig
    from core.storage.azure import AzureBackend
    from core.storage.backend import StorageError

    creds = tmp_path / "conn"
    creds.write_text("DefaultEndpointsProtocol=http;AccountName=a;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:9/a;\n")
    creds.chmod(0o600)
    loc = RemoteStorageConfig(provider="azure-blob", name="az", bucket_name="c", credentials_file=creds)
    backend = AzureBackend.from_config(loc)
    with pytest.raises(StorageError, match="location az: http://127.0.0.1:9/a .*not encrypted"):
        await backend._container()
