import json
import os

import pytest

from webtv_dagster.media_store import MediaStore
from webtv_dagster.storage import S3Reader, StorageError

from .conftest import ACCESS_KEY, SECRET_KEY, free_port_block


def test_round_trip_json_and_files(media_store, tmp_path):
    stored = media_store.put_json("channels/x/clips/x-000001/prompt.json", {"prompt": "p"})
    assert stored.uri == f"s3://{media_store.bucket}/channels/x/clips/x-000001/prompt.json"
    assert media_store.get_json(stored.key) == {"prompt": "p"}
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"\x00video" * 1000)
    media_store.upload_file(source, "a/clip.mp4", "video/mp4")
    assert media_store.download_file("a/clip.mp4", tmp_path / "back.mp4").read_bytes() == (
        source.read_bytes()
    )
    assert media_store.list_keys("a/") == ["a/clip.mp4"]


def test_large_upload_goes_in_parts_and_replaces_in_one_step(media_store, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(20 * 2**20))
    media_store.upload_file(big, "big.mp4", "video/mp4")
    head = media_store._client.head_object(Bucket=media_store.bucket, Key="big.mp4")
    assert head["ContentLength"] == 20 * 2**20
    assert head["ETag"].strip('"').endswith("-3")  # three 8 MiB parts
    small = tmp_path / "small.mp4"
    small.write_bytes(b"rerun")
    media_store.upload_file(small, "big.mp4", "video/mp4")
    assert media_store.download_file("big.mp4", tmp_path / "got").read_bytes() == b"rerun"


def test_missing_object_says_what_to_materialize(media_store, tmp_path):
    with pytest.raises(FileNotFoundError, match="materialize the upstream asset"):
        media_store.get_json("nothing/here.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        media_store.download_file("nothing/here.mp4", tmp_path / "x")


def test_wrong_credentials_fail_clearly_without_leaking_the_secret(seaweedfs, media_store):
    wrong = MediaStore(
        bucket=media_store.bucket,
        endpoint_url=seaweedfs.endpoint_url,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key="not-the-secret",
    )
    with pytest.raises(StorageError) as error:
        wrong.put_json("x.json", {})
    message = str(error.value)
    assert "refused the credentials" in message
    assert "AWS_SECRET_ACCESS_KEY" in message
    assert "not-the-secret" not in message and SECRET_KEY not in message


def test_unreachable_endpoint_fails_clearly():
    port = free_port_block(1)
    store = MediaStore("media", f"http://127.0.0.1:{port}", "us-east-1", ACCESS_KEY, SECRET_KEY)
    with pytest.raises(StorageError, match=rf"cannot reach S3 at http://127.0.0.1:{port}"):
        store.get_json("x.json")


def reader_of(seaweedfs, media_store, secret: str = SECRET_KEY, **options) -> S3Reader:
    return S3Reader(
        media_store.bucket, seaweedfs.endpoint_url, "us-east-1", ACCESS_KEY, secret, **options
    )


def test_the_playouts_reader_reads_what_the_store_wrote(seaweedfs, media_store, tmp_path):
    """The standard-library reader of the playout, against the real S3: bytes, JSON, a file
    larger than its chunks, keys with spaces and non-ASCII letters, from several threads."""
    from concurrent.futures import ThreadPoolExecutor

    reader = reader_of(seaweedfs, media_store)
    key = "channels/x/a clip+(1)/ünïcode=~.json"
    media_store.put_json(key, {"prompt": "p"})
    assert reader.get_json(key) == {"prompt": "p"}
    assert reader.get_bytes(key) == media_store.get_bytes(key)
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(3 * 2**20 + 17))
    media_store.upload_file(big, "channels/x/big.mp4", "video/mp4")
    copy = reader.download_file("channels/x/big.mp4", tmp_path / "copy.mp4")
    assert copy.read_bytes() == big.read_bytes()
    with ThreadPoolExecutor(4) as pool:  # a kept-alive connection per thread
        assert set(pool.map(lambda _: reader.get_bytes(key), range(20))) == {
            media_store.get_bytes(key)
        }


def test_the_reader_asks_again_only_for_what_changed(seaweedfs, media_store):
    reader = reader_of(seaweedfs, media_store)
    media_store.put_json("t.json", {"n": 1})
    body, etag = reader.get_bytes_if_changed("t.json", "")
    assert json.loads(body) == {"n": 1} and etag
    assert reader.get_bytes_if_changed("t.json", etag) is None
    media_store.put_json("t.json", {"n": 2})
    body, newer = reader.get_bytes_if_changed("t.json", etag)
    assert json.loads(body) == {"n": 2} and newer != etag


def test_the_reader_fails_as_the_store_does(seaweedfs, media_store, tmp_path):
    reader = reader_of(seaweedfs, media_store)
    with pytest.raises(FileNotFoundError, match="materialize the upstream asset"):
        reader.get_json("nothing/here.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reader.download_file("nothing/here.mp4", tmp_path / "x")
    wrong = reader_of(seaweedfs, media_store, secret="not-the-secret")
    media_store.put_json("x.json", {})
    with pytest.raises(StorageError) as error:
        wrong.get_json("x.json")
    message = str(error.value)
    assert "refused the credentials" in message and "AWS_SECRET_ACCESS_KEY" in message
    assert "not-the-secret" not in message and SECRET_KEY not in message
    port = free_port_block(1)
    away = S3Reader("media", f"http://127.0.0.1:{port}", "us-east-1", ACCESS_KEY, SECRET_KEY)
    with pytest.raises(StorageError, match=rf"cannot reach S3 at http://127.0.0.1:{port}"):
        away.get_json("x.json")


def test_the_embedded_store_keeps_its_sockets_in_its_own_folder(seaweedfs, tmp_path):
    """SeaweedFS put its sockets into /tmp, where another account could make the path first
    (which stopped it starting) and where every start left some behind: its local sockets are
    in a folder of the store's own (0700); the gRPC ones it names in /tmp itself, and one there
    that another account made is named before a start."""
    import os
    from pathlib import Path

    from webtv_dagster.stack.embedded_s3 import sockets_of_others

    port = int(seaweedfs.endpoint_url.rsplit(":", 1)[1])
    ports = [port + offset for offset in range(10)]
    # Bound now (a SeaweedFS killed elsewhere may have left a file of the same name behind).
    bound = {line.split()[-1] for line in Path("/proc/net/unix").read_text().splitlines()[1:]}
    in_tmp = [
        path.name
        for path in Path("/tmp").glob("seaweedfs-*.sock")
        if any(str(n) in path.name for n in ports) and str(path) in bound
    ]
    assert in_tmp and all("-grpc-" in name for name in in_tmp), in_tmp
    private = Path(seaweedfs.log_path).parent / "tmp"
    assert private.stat().st_mode & 0o777 == 0o700
    assert {p.name for p in private.iterdir() if p.is_socket()} >= {"filer.sock", "s3.sock"}
    assert sockets_of_others(port) == []
    if os.geteuid() == 0:
        free = free_port_block(10)
        planted = Path(f"/tmp/seaweedfs-filer-grpc-{free + 6}.sock")
        planted.touch()
        try:
            os.chown(planted, 1, 1)  # daemon's
            assert sockets_of_others(free) == [planted]
        finally:
            planted.unlink()


def test_only_authenticated_s3_reaches_the_embedded_store(seaweedfs, media_store):
    """What anyone on the machine could once do to what airs, tried for real: a PUT of a
    playlist through the filer port, a collection delete through the master, reading the data
    folder, and gRPC calls to the filer without the store's certificate. All refused; the
    same gRPC call with the certificate is answered (so the refusal is the lock, not a fault)."""
    import json
    import urllib.error
    import urllib.request

    import grpc

    from webtv_dagster.stack.embedded_s3 import PORT_OFFSETS, SECURITY_FOLDER

    port = int(seaweedfs.endpoint_url.rsplit(":", 1)[1])
    playlist = "channels/demo/playlist.json"
    media_store.put_json(playlist, {"entries": []})

    def status(method: str, url: str, body: bytes | None = None) -> int:
        request = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code

    filer = f"http://127.0.0.1:{port + PORT_OFFSETS['filer.port']}"
    forged = json.dumps({"entries": [{"clip_id": "evil"}]}).encode()
    assert status("PUT", f"{filer}/buckets/{media_store.bucket}/{playlist}", forged) in (401, 404)
    assert status("GET", f"{filer}/buckets/{media_store.bucket}/{playlist}") in (401, 404)
    master = f"http://127.0.0.1:{port + PORT_OFFSETS['master.port']}"
    for path in [f"/col/delete?collection={media_store.bucket}", "/dir/assign", "/vol/grow"]:
        assert status("GET", master + path) in (401, 404), path
    assert media_store.get_json(playlist) == {"entries": []}

    data_dir = seaweedfs.log_path.parent
    assert data_dir.stat().st_mode & 0o077 == 0

    grpc_port = port + PORT_OFFSETS["filer.port.grpc"]
    method = "/filer_pb.SeaweedFiler/GetFilerConfiguration"

    def call(channel) -> bytes:
        stub = channel.unary_unary(method, request_serializer=bytes, response_deserializer=bytes)
        return stub(b"", timeout=5)

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as plain, pytest.raises(grpc.RpcError):
        call(plain)
    tls = data_dir / SECURITY_FOLDER / "tls"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(tls / "ca.crt").read_bytes(),
        private_key=(tls / "weed.key").read_bytes(),
        certificate_chain=(tls / "weed.crt").read_bytes(),
    )
    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", credentials) as secure:
        assert isinstance(call(secure), bytes)


def test_the_reader_opens_a_new_connection_when_the_server_closed_its_kept_one():
    """A server that closes each connection after answering (as S3 servers do with idle ones):
    the next GET finds its kept-alive connection closed and goes on with a new one at once,
    not counted as a failed try (with one try allowed, it still succeeds)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Closing(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # says nothing of closing: the client keeps it

        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("ETag", '"e"')
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port_block(1)), Closing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        reader = S3Reader("media", endpoint, "us-east-1", ACCESS_KEY, SECRET_KEY, timeout_seconds=5)
        assert [reader.get_json("a.json") for _ in range(3)] == [{}, {}, {}]
    finally:
        server.shutdown()
