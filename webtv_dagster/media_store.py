"""The bucket's full client through boto3: uploads, writes, listings and conditional updates
(the Dagster side, the viewer service and the commands; a playout only reads, through
`storage.S3Reader`).

Objects are uploaded from disk in parts (never whole files in memory). S3 makes an object
visible under its key only once its upload completes, so a failed or interrupted upload never
leaves a half-written object behind, and a rerun replaces an object in one step.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from webtv_dagster.settings import Settings
from webtv_dagster.storage import (
    MISSING_KEY_ERRORS,
    ListedObject,
    ObjectStream,
    StorageError,
    StoredObject,
    file_sha256,
    missing_object,
    object_uri,
    refused,
    unreachable,
)

MULTIPART = TransferConfig(multipart_threshold=8 * 2**20, multipart_chunksize=8 * 2**20)
# What S3 answers a conditional write whose condition no longer holds (another writer won).
WRITE_CONFLICTS = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
UPDATE_ATTEMPTS = 50


def _json_body(document: Any) -> bytes:
    return json.dumps(document, indent=2, sort_keys=True).encode("utf-8")


class MediaStore:
    """One bucket of media, addressed by key."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        timeout_seconds: float | None = None,
    ):
        """`timeout_seconds`: how long one try of a call may take, and only one try (a check
        of whether S3 answers); None: connecting 5 s, reading 60 s, three tries."""
        self.bucket = bucket
        self.endpoint = endpoint_url or f"AWS S3 ({region})"
        self._client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=region,
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=Config(
                connect_timeout=timeout_seconds or 5,
                read_timeout=timeout_seconds or 60,
                # total_max_attempts counts the first try (max_attempts does not).
                retries={"total_max_attempts": 1 if timeout_seconds else 4, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings, timeout_seconds: float | None = None) -> MediaStore:
        """The deployment's bucket (WEBTV_S3_*) with its keys, or boto3's own chain (instance
        roles, ~/.aws) where none are set."""
        keys = (settings.aws_access_key_id, settings.aws_secret_access_key)
        access_key_id, secret_access_key = (k.get_secret_value() if k else None for k in keys)
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            timeout_seconds=timeout_seconds,
        )

    def uri(self, key: str) -> str:
        return object_uri(self.bucket, key)

    def _error(self, action: str, key: str | None, error: Exception) -> StorageError:
        where = self.uri(key) if key else f"bucket {self.bucket!r}"
        if isinstance(error, EndpointConnectionError):
            return unreachable(self.endpoint, action, where)
        if isinstance(error, ClientError):
            code = error.response.get("Error", {}).get("Code", "?")
            return refused(self.endpoint, self.bucket, action, where, code)
        return StorageError(f"S3 at {self.endpoint} failed while {action} {where}: {error}")

    @contextmanager
    def _s3_call(self, action: str, key: str | None) -> Iterator[None]:
        """Turns boto3 failures into FileNotFoundError (missing key) or StorageError."""
        try:
            yield
        except ClientError as error:
            if key and error.response.get("Error", {}).get("Code") in MISSING_KEY_ERRORS:
                raise missing_object(self.bucket, key) from None
            raise self._error(action, key, error) from None
        except BotoCoreError as error:
            raise self._error(action, key, error) from None

    def ensure_bucket(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
                raise self._error("checking", None, error) from None
            with self._s3_call("creating", None):
                self._client.create_bucket(Bucket=self.bucket)
        except BotoCoreError as error:
            raise self._error("checking", None, error) from None

    def upload_file(self, path: Path, key: str, content_type: str) -> StoredObject:
        with self._s3_call("uploading", key):
            self._client.upload_file(
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
                Config=MULTIPART,
            )
        return StoredObject(
            key=key, uri=self.uri(key), size_bytes=path.stat().st_size, sha256=file_sha256(path)
        )

    def download_file(self, key: str, path: Path) -> Path:
        with self._s3_call("downloading", key):
            self._client.download_file(self.bucket, key, str(path), Config=MULTIPART)
        return path

    def put_bytes(self, key: str, body: bytes, content_type: str) -> StoredObject:
        with self._s3_call("writing", key):
            self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
            )
        return StoredObject(key=key, uri=self.uri(key), size_bytes=len(body))

    def put_json(self, key: str, document: Any) -> StoredObject:
        return self.put_bytes(key, _json_body(document), "application/json")

    def get_bytes(self, key: str) -> bytes:
        with self._s3_call("reading", key):
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    @contextmanager
    def open_object(self, key: str, chunk_bytes: int = 2**16) -> Iterator[ObjectStream]:
        """Streams the object (never whole in memory); a missing key is a FileNotFoundError."""
        with self._s3_call("reading", key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            with self._s3_call("reading", key):
                yield from body.iter_chunks(chunk_bytes)

        try:
            yield ObjectStream(
                size_bytes=response["ContentLength"], etag=response.get("ETag", ""), chunks=chunks()
            )
        finally:
            body.close()

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def get_bytes_if_changed(self, key: str, etag: str) -> tuple[bytes, str] | None:
        """The object and its ETag, or None when its ETag is still `etag` (one request, and
        no body, for an object polled often that rarely changes)."""
        condition = {"IfNoneMatch": etag} if etag else {}
        with self._s3_call("reading", key):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key, **condition)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in {"304", "NotModified"}:
                    return None
                raise
            return response["Body"].read(), response.get("ETag", "")

    def update_json(
        self, key: str, change: Callable[[Any | None], Any], attempts: int = UPDATE_ATTEMPTS
    ) -> Any:
        """Reads the document (None when there is none), writes `change(document)` back only if
        nobody wrote it meanwhile (a conditional write on the ETag read, or on its absence),
        and reads and changes it again when somebody did: no concurrent update is lost. Returns
        what was written. Needs conditional writes (AWS S3, MinIO, SeaweedFS have them)."""
        for attempt in range(attempts):
            try:
                body, etag = self.get_bytes_if_changed(key, "")
                document = json.loads(body)
            except FileNotFoundError:
                document, etag = None, ""
            updated = change(document)
            if self._put_json_if(key, updated, etag):
                return updated
            # Another writer won: back off a random while, so that the losers spread out.
            time.sleep(random.uniform(0, min(0.01 * 2**attempt, 0.5)))
        raise StorageError(
            f"{self.uri(key)} kept changing while it was updated ({attempts} writes in a row won "
            "over this one): try again"
        )

    def _put_json_if(self, key: str, document: Any, etag: str) -> bool:
        """Writes the document if the object's ETag is still `etag` ("": if there is none);
        returns whether it did."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        with self._s3_call("writing", key):
            try:
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=_json_body(document),
                    ContentType="application/json",
                    **condition,
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in WRITE_CONFLICTS:
                    return False
                raise
        return True

    def delete(self, key: str) -> None:
        """Removes the object; removing one that does not exist is not an error."""
        with self._s3_call("deleting", key):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def list_objects(self, prefix: str) -> list[ListedObject]:
        listed: list[ListedObject] = []
        with self._s3_call("listing", prefix):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                listed.extend(
                    ListedObject(
                        key=item["Key"],
                        size_bytes=item["Size"],
                        modified_at=item["LastModified"].timestamp(),
                    )
                    for item in page.get("Contents", [])
                )
        return listed

    def list_keys(self, prefix: str) -> list[str]:
        return [listed.key for listed in self.list_objects(prefix)]
