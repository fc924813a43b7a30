"""Media storage in S3 (SeaweedFS, MinIO, AWS): what every client of the bucket shares (its
records, its errors and their wording) and `S3Reader`, the read-only client of the playout.

Two clients read the bucket. `media_store.MediaStore` (boto3) writes, uploads in parts, lists
and updates conditionally: the Dagster side, the viewer service and the commands use it.
`S3Reader` only reads, with the standard library alone (GETs signed with AWS Signature
Version 4): a playout runs per channel and only reads, and boto3 would cost each one 40 MB.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import random
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from pydantic import BaseModel

from webtv_dagster.settings import Settings

CREDENTIAL_ERRORS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
}
MISSING_KEY_ERRORS = {"404", "NoSuchKey"}


class StorageError(RuntimeError):
    """S3 refused or could not be reached; the message says which endpoint and what to check."""


class StoredObject(BaseModel):
    key: str
    uri: str
    size_bytes: int
    sha256: str | None = None  # of uploaded files, so that copies can be checked against it


class ListedObject(BaseModel):
    key: str
    size_bytes: int
    modified_at: float  # Unix time


@dataclass(frozen=True)
class ObjectStream:
    """An object being read: its size, its ETag (changes when the object is replaced) and its
    body in chunks."""

    size_bytes: int
    etag: str
    chunks: Iterator[bytes]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def object_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def missing_object(bucket: str, key: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{object_uri(bucket, key)} does not exist: materialize the upstream asset first"
    )


def unreachable(endpoint: str, action: str, where: str) -> StorageError:
    return StorageError(
        f"cannot reach S3 at {endpoint} while {action} {where}: is the server running and "
        "WEBTV_S3_ENDPOINT_URL right? (`webtv up` starts the embedded one)"
    )


def refused(endpoint: str, bucket: str, action: str, where: str, code: str) -> StorageError:
    """S3's answer `code` to `action` on `where` (an object's URI or the bucket), as what to do."""
    if code in CREDENTIAL_ERRORS:
        return StorageError(
            f"S3 at {endpoint} refused the credentials ({code}) while {action} {where}: check "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if code == "NoSuchBucket":
        return StorageError(
            f"bucket {bucket!r} does not exist at {endpoint}: create it or set WEBTV_S3_BUCKET"
        )
    return StorageError(f"S3 at {endpoint} answered {code} while {action} {where}")


class ObjectReader(Protocol):
    """What reading the bucket takes (MediaStore and S3Reader both do it)."""

    bucket: str

    def uri(self, key: str) -> str: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_json(self, key: str) -> Any: ...

    def get_bytes_if_changed(self, key: str, etag: str) -> tuple[bytes, str] | None: ...

    def download_file(self, key: str, path: Path) -> Path: ...


EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRIED_STATUSES = {500, 502, 503, 504}
CHUNK_BYTES = 2**20


class S3Reader:
    """Reads objects of one bucket: GETs signed with AWS Signature Version 4 (path-style
    addressing, as MediaStore), over one kept-alive connection per thread. Failures read as
    MediaStore's do: a missing key is a FileNotFoundError, the rest a StorageError."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        timeout_seconds: float | None = None,
    ):
        """`timeout_seconds`: how long one try may take, and only one try; None: connecting
        5 s, reading 60 s, four tries (boto3's standard retries, as MediaStore)."""
        url = urlsplit(endpoint_url or f"https://s3.{region}.amazonaws.com")
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise StorageError(f"WEBTV_S3_ENDPOINT_URL {endpoint_url!r} is not an http(s) URL")
        self.bucket = bucket
        self.endpoint = endpoint_url or f"AWS S3 ({region})"
        self._url = url
        self._region = region
        self._access_key_id = access_key_id
        self._secret = secret_access_key
        self._timeout = timeout_seconds or 60
        self._attempts = 1 if timeout_seconds else 4
        self._connections = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Reader:
        """The deployment's bucket with its keys (WEBTV_S3_*, AWS_ACCESS_KEY_ID and
        AWS_SECRET_ACCESS_KEY): boto3's other sources of credentials (instance roles,
        ~/.aws) are MediaStore's alone."""
        if not (settings.aws_access_key_id and settings.aws_secret_access_key):
            raise StorageError("S3Reader needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        return cls(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            access_key_id=settings.aws_access_key_id.get_secret_value(),
            secret_access_key=settings.aws_secret_access_key.get_secret_value(),
        )

    def uri(self, key: str) -> str:
        return object_uri(self.bucket, key)

    def get_bytes(self, key: str) -> bytes:
        got = self._get(key, {}, None)
        assert got is not None  # no condition: never "not modified"
        return got[0]

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def get_bytes_if_changed(self, key: str, etag: str) -> tuple[bytes, str] | None:
        """The object and its ETag, or None when its ETag is still `etag`."""
        return self._get(key, {"if-none-match": etag} if etag else {}, None)

    def download_file(self, key: str, path: Path) -> Path:
        """Streams the object into `path` (never whole in memory)."""
        self._get(key, {}, path)
        return path

    def _get(
        self, key: str, condition: dict[str, str], into: Path | None
    ) -> tuple[bytes, str] | None:
        """One GET, tried again on a lost connection or a 5xx: (body, ETag), None for "not
        modified"; with `into`, the body goes to that file and b"" is returned. A failed
        write of that file (a full disk) raises its OSError: it is no fault of S3's."""
        path = f"/{quote(self.bucket, safe='')}/{quote(key, safe='/~')}"
        attempt = 0
        while attempt < self._attempts:
            if attempt:  # boto3's standard backoff: random, growing, at most 20 s
                time.sleep(random.uniform(0, min(2**attempt, 20)))
            attempt += 1
            reused = getattr(self._connections, "open", None) is not None
            try:
                connection = self._connection()
                connection.request("GET", path, headers=self._signed(path, condition))
                response = connection.getresponse()
                body = b"" if response.status == 200 and into is not None else response.read()
            except (OSError, http.client.HTTPException):
                self._drop_connection()
                if reused:  # a kept-alive connection the server had closed: a new one, at once
                    attempt -= 1
                continue
            if response.status in RETRIED_STATUSES:
                continue
            if response.status == 200:
                etag = response.getheader("ETag", "")
                if into is None:
                    return body, etag
                if self._save(response, into):
                    return b"", etag
                continue
            if response.status == 304:
                return None
            code = _error_code(body) or str(response.status)
            if code in MISSING_KEY_ERRORS:
                raise missing_object(self.bucket, key)
            raise refused(self.endpoint, self.bucket, "reading", self.uri(key), code)
        raise unreachable(self.endpoint, "reading", self.uri(key))

    def _save(self, response: http.client.HTTPResponse, into: Path) -> bool:
        """Writes the body into the file; False when the connection broke on the way."""
        with into.open("wb") as file:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException):
                    self._drop_connection()
                    return False
                if not chunk:
                    return True
                file.write(chunk)

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._connections, "open", None)
        if connection is None:
            kind = (
                http.client.HTTPSConnection
                if self._url.scheme == "https"
                else http.client.HTTPConnection
            )
            # Connecting takes at most 5 s; reading waits as long as one try may take.
            connection = kind(self._url.hostname, self._url.port, timeout=min(5, self._timeout))
            connection.connect()
            connection.sock.settimeout(self._timeout)
            self._connections.open = connection
        return connection

    def _drop_connection(self) -> None:
        if (connection := getattr(self._connections, "open", None)) is not None:
            connection.close()
            self._connections.open = None

    def _signed(self, path: str, extra: dict[str, str]) -> dict[str, str]:
        """The headers of a GET of `path` with its AWS Signature Version 4 (no query, an
        empty body)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = stamp[:8]
        headers = {
            "host": self._url.netloc,
            "x-amz-content-sha256": EMPTY_BODY_SHA256,
            "x-amz-date": stamp,
            **extra,
        }
        names = sorted(headers)
        signed_names = ";".join(names)
        canonical = "\n".join(
            [
                "GET",
                path,
                "",  # no query
                *(f"{name}:{headers[name].strip()}" for name in names),
                "",
                signed_names,
                EMPTY_BODY_SHA256,
            ]
        )
        scope = f"{day}/{self._region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = f"AWS4{self._secret}".encode()
        for part in (day, self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key_id}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return headers


def _error_code(body: bytes) -> str | None:
    """The <Code> of S3's XML error document, if there is one."""
    found = re.search(rb"<Code>([^<]{1,100})</Code>", body)
    return found.group(1).decode("ascii", "replace") if found else None
