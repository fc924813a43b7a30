import os

import pytest

from webtv_dagster.storage import MediaStore, StorageError

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
