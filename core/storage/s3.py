"""S3 and S3-compatible object storage (AWS, Google Cloud Storage's XML API, MinIO...).

Writes never overwrite: a single PUT carries ``If-None-Match: *`` and a multipart upload
completes with it too, so the store itself refuses a second writer (412 -> ObjectExists);
Google Cloud Storage gets its own equivalent, ``x-goog-if-generation-match: 0``. A PUT or
a completed multipart upload is atomic: readers see the whole object or none, and an
interrupted multipart upload is aborted so no parts are left billed.

botocore's own retries are off: RetryingBackend (core/storage/retry.py) owns retrying,
so one policy (and one count of attempts in messages) covers every provider.
"""

from __future__ import annotations

import builtins
import asyncio
import configparser
import contextlib
from datetime import datetime, timedelta, timezone
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.storage.backend import (
    ObjectLocked,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    Payload,
    StorageError,
    StorageReadOnly,
    StorageUsage,
    TempInfo,
    as_bytes,
    checked_key,
    payload_size,
)
from core.storage.credentials import read_credentials_file, refuse_insecure
from core.storage.retry import TransientError, cleanup

__all__ = ["S3Backend", "GCS_ENDPOINT"]

GCS_ENDPOINT = "https://storage.googleapis.com"

# S3 allows 10,000 parts of at least 5 MiB (but the last); 8 MiB parts cover 80 GB.
MULTIPART_THRESHOLD = 32 * 1024 * 1024
PART_SIZE = 8 * 1024 * 1024

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_EXISTS = {"PreconditionFailed", "412"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
    "429",
    "ConditionalRequestConflict",  # 409: a concurrent conditional write; try again
    "OperationAborted",
}
_DENIED = {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"}
# Operations (the ``what`` of _error) that change the bucket: a denial there is a refused write.
_WRITES = ("write ", "delete ", "abort upload ")


_LOADER: Any = None


def _normalize_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


class S3Backend:
    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        credentials_file: Path | None = None,
        ca_bundle: Path | None = None,
        timeout: float = 60.0,
        max_connections: int = 10,
        gcs: bool = False,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
        object_lock: str | None = None,
        object_lock_days: int = 30,
    ) -> None:
        self.bucket = bucket
        # S3 Object Lock: "governance" or "compliance", each object locked this many days
        # from its write (locks/ excepted: they come and go with every operation).
        self.object_lock = object_lock
        self.object_lock_days = object_lock_days
        self.prefix = _normalize_prefix(prefix)
        self.endpoint = endpoint
        self.region = region
        self.credentials_file = credentials_file
        self.ca_bundle = ca_bundle
        self.timeout = timeout
        self.max_connections = max_connections
        self.gcs = gcs
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self._client: Any = None
        self._client_cm: Any = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, loc: Any) -> S3Backend:
        gcs = loc.provider == "gcp-storage"
        endpoint = loc.endpoint or (GCS_ENDPOINT if gcs else None)
        refuse_insecure(loc, endpoint or "")
        return cls(
            loc.bucket_name,
            prefix=loc.path_prefix,
            endpoint=endpoint,
            region=loc.region,
            credentials_file=loc.credentials_file,
            ca_bundle=loc.ca_bundle,
            timeout=float(loc.timeout_seconds),
            max_connections=max(2, loc.concurrency * 2),
            gcs=gcs,
            object_lock=getattr(loc, "object_lock", None),
            object_lock_days=getattr(loc, "object_lock_days", None) or 30,
        )

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r})"

    @property
    def location(self) -> str:
        scheme = "gs" if self.gcs else "s3"
        where = f"{scheme}://{self.bucket}/{self.prefix}"
        if self.endpoint and not (self.gcs and self.endpoint == GCS_ENDPOINT):
            where += f" at {self.endpoint}"
        return where

    # -- the client -------------------------------------------------------------------------

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client_cm = self._make_client()
                try:
                    client = await self._client_cm.__aenter__()
                    if self.gcs:
                        # GCS ignores If-None-Match on writes; this header is its create-only condition.
                        for op in ("PutObject", "CompleteMultipartUpload"):
                            client.meta.events.register(f"before-sign.s3.{op}", _gcs_create_only)
                    self._client = client
                except Exception as exc:  # noqa: BLE001 - mapped to one message
                    self._client_cm = None
                    raise self._error(exc, "connect") from None
        return self._client

    def _make_client(self) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        global _LOADER
        session = AioSession()
        # Sessions stay per backend (each resolves and caches its own credentials), but
        # share one loader: it caches botocore's service models, about a second of CPU
        # to parse for every new client otherwise.
        if _LOADER is None:
            _LOADER = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _LOADER)
        keys: dict[str, str] = {}
        if self.credentials_file is not None:
            # Read here rather than handed to botocore's chain, so the file named in the
            # config wins over any AWS_* variables left in the environment.
            keys = _read_credentials(self.credentials_file, self.location)
        config: dict[str, Any] = dict(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=self.max_connections,
            # Checksums S3 validates but GCS's XML API rejects (aws-chunked uploads).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        if self.endpoint:
            config["s3"] = {"addressing_style": "path"}
        # AWS_ENDPOINT_URL(_S3) in the environment would silently send our data elsewhere:
        # the endpoint is the config's, or AWS's own.
        config["ignore_configured_endpoint_urls"] = True
        region = self.region or ("auto" if self.gcs else "us-east-1")
        client = session.create_client(
            "s3",
            region_name=region,
            endpoint_url=self.endpoint,
            verify=str(self.ca_bundle) if self.ca_bundle else True,
            config=AioConfig(**config),
            **keys,
        )
        return client

    def _key(self, key: str) -> str:
        return self.prefix + checked_key(key)

    def _error(self, exc: BaseException, what: str) -> Exception:
        """One of our errors for a botocore/aiohttp failure; messages carry no secrets."""
        import aiohttp
        from botocore import exceptions as bx

        where = f"{self.location}: {what}"
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, bx.ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = err.get("Message") or code or f"HTTP {status}"
            if code in _NOT_FOUND or status == 404 and code != "NoSuchBucket":
                return ObjectNotFound(f"{where}: does not exist")
            if code in _EXISTS or status == 412:
                return ObjectExists(f"{where}: already exists")
            if code == "NoSuchBucket":
                return StorageError(f"{where}: bucket {self.bucket} does not exist")
            if code in _DENIED or status == 403:
                if what.startswith(_WRITES):
                    # Reads work (they came first: the repository opened), writes are denied:
                    # a read-only credential or a bucket policy. Reading commands go on
                    # without a lock; writers stop with exit 24 (docs/CLI.md).
                    refused = StorageReadOnly(
                        f"{self.location}: the storage refuses writes (access denied: {message}): cannot {what}"
                    )
                    refused.reason = f"access denied: {message}"
                    return refused
                return StorageError(f"{where}: access denied ({message}); check the credentials and bucket policy")
            if code in _TRANSIENT or (isinstance(status, int) and (status >= 500 or status == 429)):
                return TransientError(f"{where}: {message} (HTTP {status})")
            return StorageError(f"{where}: {message} (HTTP {status})")
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return StorageError(f"{where}: no usable credentials; name a credentials_file or set the AWS_* environment")
        if isinstance(exc, bx.SSLError):
            return StorageError(f"{where}: TLS failed ({exc}); check ca_bundle")
        if isinstance(
            exc,
            (
                bx.EndpointConnectionError,
                bx.ConnectionClosedError,
                bx.ReadTimeoutError,
                bx.ConnectTimeoutError,
                bx.IncompleteReadError,
                bx.ResponseStreamingError,
                bx.HTTPClientError,
                aiohttp.ClientPayloadError,
                aiohttp.ClientConnectionError,
                ConnectionError,
                asyncio.TimeoutError,
            ),
        ):
            return TransientError(f"{where}: connection failed ({type(exc).__name__})")
        if isinstance(exc, bx.BotoCoreError):
            return StorageError(f"{where}: {exc}")
        return exc if isinstance(exc, Exception) else StorageError(f"{where}: {exc!r}")

    async def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        client = await self._get_client()
        try:
            return await getattr(client, method)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to our errors
            raise self._error(exc, what) from None

    # -- writes -----------------------------------------------------------------------------

    def _md5(self, body: bytes) -> dict[str, Any]:
        """S3 refuses a locked write without an integrity header: Content-MD5 (per part for a
        multipart upload, so completing needs no checksums)."""
        if self.object_lock is None:
            return {}
        import base64
        import hashlib

        return {"ContentMD5": base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()}

    def _lock_args(self, key: str) -> dict[str, Any]:
        """The Object Lock parameters of a write of ``key`` (none for locks/, or without a lock)."""
        if self.object_lock is None or key.startswith("locks/"):
            return {}
        until = datetime.now(timezone.utc) + timedelta(days=self.object_lock_days)
        return {"ObjectLockMode": self.object_lock.upper(), "ObjectLockRetainUntilDate": until}

    async def put(self, key: str, data: Payload) -> None:
        full = self._key(key)
        size = payload_size(data)
        if size < self.multipart_threshold:
            body = bytes(as_bytes(data))
            lock = self._lock_args(key)
            await self._call(
                f"write {key}",
                "put_object",
                Bucket=self.bucket,
                Key=full,
                Body=body,
                IfNoneMatch="*",
                **lock,
                **(self._md5(body) if lock else {}),
            )
            return
        await self._put_multipart(key, full, as_bytes(data))

    async def _put_multipart(self, key: str, full: str, data: bytes | memoryview) -> None:
        what = f"write {key}"
        # Checked first so a doomed upload does not send every part; the conditional
        # complete below still decides a race.
        with contextlib.suppress(ObjectNotFound):
            await self.stat(key)
            raise ObjectExists(f"{self.location}: write {key}: already exists")
        created = await self._call(
            what, "create_multipart_upload", Bucket=self.bucket, Key=full, **self._lock_args(key)
        )
        upload_id = created["UploadId"]
        done = False
        try:
            view = memoryview(data)
            parts = []
            for number, start in enumerate(range(0, len(view), self.part_size), start=1):
                chunk = bytes(view[start : start + self.part_size])
                resp = await self._call(
                    f"{what} (part {number})",
                    "upload_part",
                    Bucket=self.bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    **self._md5(chunk),
                )
                parts.append({"PartNumber": number, "ETag": resp["ETag"]})
            await self._call(
                what,
                "complete_multipart_upload",
                Bucket=self.bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
            done = True
        finally:
            if not done:
                # Shielded: this also runs when the upload is cancelled (a timeout), and
                # leftover parts cost money until a lifecycle rule removes them.
                await cleanup(self._abort(full, upload_id))

    async def _abort(self, full: str, upload_id: str) -> None:
        client = await self._get_client()
        await client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

    # -- reads ------------------------------------------------------------------------------

    async def get(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        full = self._key(key)
        if length == 0:
            await self.stat(key)
            return b""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if length is not None:
            kwargs["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            kwargs["Range"] = f"bytes={offset}-"
        what = f"read {key}" if "Range" not in kwargs else f"read {key} ({kwargs['Range']})"
        resp = await self._call(what, "get_object", **kwargs)
        try:
            async with resp["Body"] as body:
                # StreamingBody checks the body against Content-Length (IncompleteReadError).
                return await body.read()
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, what) from None

    async def _head(self, key: str) -> dict:
        return await self._call(f"stat {key}", "head_object", Bucket=self.bucket, Key=self._key(key))

    async def stat(self, key: str) -> ObjectInfo:
        resp = await self._head(key)
        return ObjectInfo(key, int(resp["ContentLength"]))

    async def list(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        client = await self._get_client()
        cut = len(self.prefix)
        paginator = client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", ()):
                    name = item["Key"]
                    if name.endswith("/"):
                        continue  # a console-made "folder" marker, not an object
                    yield ObjectInfo(name[cut:], int(item["Size"]))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, f"list {prefix or '/'}") from None

    async def delete(self, key: str) -> None:
        # S3 deletes a missing key without complaint; the protocol says ObjectNotFound.
        head = await self._head(key)
        until = head.get("ObjectLockRetainUntilDate")
        if until is not None and until > datetime.now(timezone.utc):
            # In a versioned bucket a plain delete would only hide the locked version behind a
            # delete marker: the object would look gone while it is kept and billed. Refused
            # instead, so prune skips it and tries again once the lock has passed.
            raise ObjectLocked(
                f"{self.location}: delete {key}: locked by S3 Object Lock "
                f"({head.get('ObjectLockMode', '?').lower()}) until {until:%Y-%m-%d %H:%M} UTC"
            )
        await self._call(f"delete {key}", "delete_object", Bucket=self.bucket, Key=self._key(key))

    async def list_temporary(self) -> builtins.list[TempInfo]:
        """Multipart uploads under the prefix that were begun and never completed or aborted
        (a process killed mid-upload): their parts are billed until aborted."""
        client = await self._get_client()
        cut = len(self.prefix)
        out: list[TempInfo] = []
        try:
            paginator = client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for up in page.get("Uploads", ()) or ():
                    initiated = up.get("Initiated")
                    when = initiated.timestamp() if hasattr(initiated, "timestamp") else 0.0
                    out.append(TempInfo(f"{up['Key'][cut:]}?uploadId={up['UploadId']}", None, when))
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "list incomplete uploads") from None
        return sorted(out, key=lambda t: t.key)

    async def delete_temporary(self, key: str) -> None:
        name, sep, upload_id = key.partition("?uploadId=")
        if not sep or not upload_id:
            raise StorageError(f"{self.location}: {key} is not an incomplete upload")
        await self._call(
            f"abort upload of {name}",
            "abort_multipart_upload",
            Bucket=self.bucket,
            Key=self._key(name),
            UploadId=upload_id,
        )

    # -- the location -----------------------------------------------------------------------

    async def exists(self) -> bool:
        try:
            await self.stat("config")
        except ObjectNotFound:
            return False
        except StorageError as exc:
            if "does not exist" in str(exc):  # no bucket yet
                return False
            raise
        return True

    async def create(self) -> None:
        try:
            await self._call("check the bucket", "head_bucket", Bucket=self.bucket)
            await self._check_lock_enabled()
            return
        except ObjectNotFound:
            pass  # 404: no such bucket; make it
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.object_lock is not None:
            kwargs["ObjectLockEnabledForBucket"] = True  # versioning comes with it
        if self.region and self.region not in ("us-east-1", "auto"):
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            await self._call("create the bucket", "create_bucket", **kwargs)
        except StorageError as exc:
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    async def _check_lock_enabled(self) -> None:
        """With ``object_lock``, an existing bucket must have Object Lock on (it can only be
        chosen when a bucket is made): else every write would go unlocked, silently."""
        if self.object_lock is None:
            return
        try:
            conf = await self._call(
                "read the Object Lock configuration", "get_object_lock_configuration", Bucket=self.bucket
            )
        except StorageError:
            conf = {}
        if (conf.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") != "Enabled":
            raise StorageError(
                f"{self.location}: bucket {self.bucket} has no S3 Object Lock, and it can only be turned on when "
                "a bucket is made: name a new bucket (the first copy makes it with Object Lock on)"
            )

    async def locked_until(self, key: str) -> datetime | None:
        """When S3 Object Lock lets ``key`` go (None: not locked, or no longer)."""
        if self.object_lock is None:
            return None
        until = (await self._head(key)).get("ObjectLockRetainUntilDate")
        return until if until is not None and until > datetime.now(timezone.utc) else None

    async def lock_state(self) -> str | None:
        """What `locations` shows: "object-lock MODE Nd", or None without a lock."""
        if self.object_lock is None:
            return None
        return f"object-lock {self.object_lock} {self.object_lock_days}d"

    async def usage(self) -> StorageUsage:
        used = count = 0
        async for info in self.list(""):
            used += info.size
            count += 1
        return StorageUsage(bytes_used=used, objects=count, free_bytes=None)

    async def close(self) -> None:
        cm, self._client_cm, self._client = self._client_cm, None, None
        if cm is not None:
            await cm.__aexit__(None, None, None)


def _gcs_create_only(request: Any, **_: Any) -> None:
    request.headers["x-goog-if-generation-match"] = "0"


def _read_credentials(path: Path, where: str) -> dict[str, str]:
    """Keys from a shared-credentials file ([default] aws_access_key_id = ...); GCS HMAC
    keys are written the same way. Errors name the file and the missing key, never a value."""
    parser = configparser.RawConfigParser()
    text = read_credentials_file(path, where)
    try:
        parser.read_string(text, str(path))
    except configparser.Error as exc:
        raise StorageError(f"{where}: credentials_file {path} cannot be read ({type(exc).__name__})") from None
    sections = parser.sections()
    section = "default" if "default" in sections else (sections[0] if sections else None)
    if section is None:
        raise StorageError(f"{where}: credentials_file {path} has no [default] section")
    values = parser[section]
    out: dict[str, str] = {}
    for name in ("aws_access_key_id", "aws_secret_access_key"):
        if not values.get(name):
            raise StorageError(f"{where}: credentials_file {path} [{section}] lacks {name}")
        out[name] = values[name].strip()
    if values.get("aws_session_token"):
        out["aws_session_token"] = values["aws_session_token"].strip()
    return out
