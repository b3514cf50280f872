"""Azure Blob Storage through azure-storage-blob's async client.

Writes use ``overwrite=False``: a single Put Blob, or staged blocks committed with one Put
Block List, both sent with ``If-None-Match: *``. Either is atomic; a second writer gets
BlobAlreadyExists (-> ObjectExists). Uncommitted blocks of an interrupted upload are never
visible and Azure discards them after a week.

Credentials never come from config.toml: ``credentials_file`` holds a connection string,
or ``account_name``/``account_key``/``sas_token``/``connection_string`` lines; without it,
AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY or
AZURE_STORAGE_SAS_TOKEN. The SDK's own retries are off; RetryingBackend owns retrying.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from core.storage.backend import (
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    Payload,
    StorageError,
    StorageReadOnly,
    StorageUsage,
    as_bytes,
    checked_key,
)
from core.storage.credentials import key_values, read_credentials_file, refuse_insecure
from core.storage.retry import TransientError

__all__ = ["AzureBackend", "AzureCredentials", "load_credentials"]

_FILE_KEYS = ("connection_string", "account_name", "account_key", "sas_token")


class AzureCredentials:
    """Where and how to authenticate; ``repr`` never shows the secret."""

    __slots__ = ("account_url", "credential")

    def __init__(self, account_url: str | None, credential: Any) -> None:
        self.account_url = account_url
        self.credential = credential

    def __repr__(self) -> str:
        return f"AzureCredentials(account_url={self.account_url!r}, credential=<hidden>)"


def _parse_connection_string(text: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.strip().split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise StorageError(f"{where}: connection string is malformed (a part has no '=')")
        out[name.strip()] = value.strip()
    return out


def _from_connection_string(text: str, endpoint: str | None, where: str) -> AzureCredentials:
    parts = _parse_connection_string(text, where)
    account = parts.get("AccountName")
    url = endpoint or parts.get("BlobEndpoint")
    if url is None and account:
        protocol = parts.get("DefaultEndpointsProtocol", "https")
        suffix = parts.get("EndpointSuffix", "core.windows.net")
        url = f"{protocol}://{account}.blob.{suffix}"
    if "AccountKey" in parts:
        if not account:
            raise StorageError(f"{where}: connection string has AccountKey but no AccountName")
        return AzureCredentials(url, {"account_name": account, "account_key": parts["AccountKey"]})
    if "SharedAccessSignature" in parts:
        return AzureCredentials(url, parts["SharedAccessSignature"])
    raise StorageError(f"{where}: connection string has neither AccountKey nor SharedAccessSignature")


def load_credentials(
    credentials_file: Path | None, endpoint: str | None, where: str, env: Mapping[str, str] = os.environ
) -> AzureCredentials:
    """The account URL and credential, from the file when named, else the environment.
    Messages name the file or variable and what is missing, never a value."""
    if credentials_file is not None:
        text = read_credentials_file(credentials_file, where)
        fields = key_values(text, _FILE_KEYS)
        file_where = f"{where}: credentials_file {credentials_file}"
        if not fields:
            return _from_connection_string(text, endpoint, file_where)
        if "connection_string" in fields:
            return _from_connection_string(fields["connection_string"], endpoint, file_where)
        account = fields.get("account_name")
        url = endpoint or (f"https://{account}.blob.core.windows.net" if account else None)
        if "account_key" in fields:
            if not account:
                raise StorageError(f"{file_where} has account_key but no account_name")
            return AzureCredentials(url, {"account_name": account, "account_key": fields["account_key"]})
        if "sas_token" in fields:
            return AzureCredentials(url, fields["sas_token"])
        raise StorageError(f"{file_where} holds no connection_string, account_key or sas_token")
    if env.get("AZURE_STORAGE_CONNECTION_STRING"):
        return _from_connection_string(
            env["AZURE_STORAGE_CONNECTION_STRING"], endpoint, f"{where}: AZURE_STORAGE_CONNECTION_STRING"
        )
    account = env.get("AZURE_STORAGE_ACCOUNT")
    url = endpoint or (f"https://{account}.blob.core.windows.net" if account else None)
    if account and env.get("AZURE_STORAGE_KEY"):
        return AzureCredentials(url, {"account_name": account, "account_key": env["AZURE_STORAGE_KEY"]})
    if env.get("AZURE_STORAGE_SAS_TOKEN"):
        return AzureCredentials(url, env["AZURE_STORAGE_SAS_TOKEN"])
    raise StorageError(
        f"{where}: no credentials; name a credentials_file or set AZURE_STORAGE_CONNECTION_STRING "
        "(or AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY)"
    )


class AzureBackend:
    def __init__(
        self,
        container: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        credentials_file: Path | None = None,
        timeout: float = 60.0,
        max_single_put_size: int = 64 * 1024 * 1024,
        max_block_size: int = 8 * 1024 * 1024,
        api_version: str | None = None,
        insecure_refused_as: str | None = None,
    ) -> None:
        self.container = container
        # From a config: the location's name, so a connection string's http:// BlobEndpoint
        # is refused like an http:// endpoint unless allow_insecure (None: built by code).
        self.insecure_refused_as = insecure_refused_as
        prefix = prefix.strip("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.endpoint = endpoint
        self.credentials_file = credentials_file
        self.timeout = timeout
        self.max_single_put_size = max_single_put_size
        self.max_block_size = max_block_size
        self.api_version = api_version
        self._client: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, loc: Any) -> AzureBackend:
        refuse_insecure(loc, loc.endpoint or "")
        return cls(
            loc.bucket_name,
            prefix=loc.path_prefix,
            endpoint=loc.endpoint,
            credentials_file=loc.credentials_file,
            timeout=float(loc.timeout_seconds),
            insecure_refused_as=None if loc.allow_insecure else loc.name,
        )

    def __repr__(self) -> str:
        return f"AzureBackend({self.location!r})"

    @property
    def location(self) -> str:
        where = f"azure://{self.container}/{self.prefix}"
        return f"{where} at {self.endpoint}" if self.endpoint else where

    async def _container(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from azure.storage.blob.aio import ContainerClient

                creds = load_credentials(self.credentials_file, self.endpoint, self.location)
                if creds.account_url is None:
                    raise StorageError(f"{self.location}: no endpoint; set endpoint to the account's blob URL")
                if self.insecure_refused_as is not None and creds.account_url.lower().startswith("http://"):
                    raise StorageError(
                        f"location {self.insecure_refused_as}: {creds.account_url} (from the "
                        "credentials) is not encrypted: use https://, or set allow_insecure = true "
                        "on this location"
                    )
                kwargs: dict[str, Any] = dict(
                    retry_total=0,
                    connection_timeout=self.timeout,
                    read_timeout=self.timeout,
                    max_single_put_size=self.max_single_put_size,
                    max_block_size=self.max_block_size,
                )
                if self.api_version:
                    kwargs["api_version"] = self.api_version
                self._client = ContainerClient(creds.account_url, self.container, credential=creds.credential, **kwargs)
        return self._client

    def _name(self, key: str) -> str:
        return self.prefix + checked_key(key)

    def _error(self, exc: BaseException, what: str) -> BaseException:
        from azure.core import exceptions as ax

        where = f"{self.location}: {what}"
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, ax.ResourceNotFoundError):
            code = getattr(exc, "error_code", None)
            if code == "ContainerNotFound":
                return StorageError(f"{where}: container {self.container} does not exist")
            return ObjectNotFound(f"{where}: does not exist")
        if isinstance(exc, (ax.ResourceExistsError, ax.ResourceModifiedError)):
            return ObjectExists(f"{where}: already exists")
        if isinstance(exc, ax.ClientAuthenticationError):
            return StorageError(f"{where}: authentication failed; check the credentials")
        if isinstance(exc, ax.HttpResponseError):
            status = exc.status_code
            code = getattr(exc, "error_code", None) or f"HTTP {status}"
            if status == 412 or code == "BlobAlreadyExists":
                return ObjectExists(f"{where}: already exists")
            if status is not None and (status >= 500 or status in (408, 429)):
                return TransientError(f"{where}: {code} (HTTP {status})")
            if status == 403:
                if what.startswith(("write ", "delete ", "create ")):
                    # Reads work (they came first: the repository opened), writes are denied: a
                    # read-only SAS (no w/d/c permission: AuthorizationPermissionMismatch) or a
                    # role that may only read. Reading commands go on without a lock; writers
                    # stop with exit 24 (docs/CLI.md).
                    refused = StorageReadOnly(
                        f"{self.location}: the storage refuses writes (access denied: {code}): cannot {what}"
                    )
                    refused.reason = f"access denied: {code}"
                    return refused
                return StorageError(f"{where}: access denied ({code}); check the credentials")
            return StorageError(f"{where}: {code} (HTTP {status})")
        if isinstance(
            exc,
            (
                ax.ServiceRequestError,
                ax.ServiceResponseError,
                ax.IncompleteReadError,
                ConnectionError,
                asyncio.TimeoutError,
            ),
        ):
            return TransientError(f"{where}: connection failed ({type(exc).__name__})")
        if isinstance(exc, ax.AzureError):
            return StorageError(f"{where}: {type(exc).__name__}")
        return exc

    async def put(self, key: str, data: Payload) -> None:
        client = await self._container()
        try:
            await client.upload_blob(self._name(key), bytes(as_bytes(data)), overwrite=False)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"write {key}") from None

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        client = await self._container()
        what = f"read {key}"
        try:
            if length == 0:
                await client.get_blob_client(self._name(key)).get_blob_properties()
                return b""
            if length is None and offset == 0:
                stream = await client.download_blob(self._name(key))
            else:
                stream = await client.download_blob(self._name(key), offset=offset, length=length)
            data = await stream.readall()
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, what) from None
        if length is not None and len(data) != length:
            raise TransientError(
                f"{self.location}: short read of {key}: wanted {length} bytes at {offset}, got {len(data)}"
            )
        return data

    async def stat(self, key: str) -> ObjectInfo:
        client = await self._container()
        try:
            props = await client.get_blob_client(self._name(key)).get_blob_properties()
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"stat {key}") from None
        return ObjectInfo(key, int(props.size))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        client = await self._container()
        cut = len(self.prefix)
        try:
            async for blob in client.list_blobs(name_starts_with=self.prefix + prefix):
                yield ObjectInfo(blob.name[cut:], int(blob.size))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"list {prefix or '/'}") from None

    async def delete(self, key: str) -> None:
        client = await self._container()
        try:
            await client.delete_blob(self._name(key))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"delete {key}") from None

    async def exists(self) -> bool:
        client = await self._container()
        try:
            # The config blob alone (False too when the container is missing): a container
            # SAS may read its blobs but not the container's properties (403
            # AuthorizationPermissionMismatch), and a read-only SAS is a valid way to read.
            return await client.get_blob_client(self._name("config")).exists()
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "check the repository") from None

    async def create(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        client = await self._container()
        try:
            await client.create_container()
        except ResourceExistsError:
            pass
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "create the container") from None

    async def usage(self) -> StorageUsage:
        used = count = 0
        async for info in self.list(""):
            used += info.size
            count += 1
        return StorageUsage(bytes_used=used, objects=count, free_bytes=None)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
