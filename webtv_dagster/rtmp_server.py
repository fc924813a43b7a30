"""The project's media server: nginx with libnginx-mod-rtmp. RTMP in, one application per
channel; out over HTTP: HLS for each channel, the web viewer, each channel's playout state
for the viewer's program guide, and (from the viewer service) the clips' stage previews, shot
requests, the guide and XMLTV. Its configuration is generated; it runs in the foreground under
the process that started it, with everything it writes under one folder.

Publish to rtmp://HOST:RTMP_PORT/<channel slug>/live; watch http://HOST:HTTP_PORT/ (viewer) or
http://HOST:HTTP_PORT/hls/<slug>/live.m3u8 (any HLS player).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from webtv_dagster.processes import port_is_free, stop_process
from webtv_dagster.secrets import write_private
from webtv_dagster.settings import Settings

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
STREAM_NAME = "live"
VIEWER = Path(__file__).with_name("viewer")
HLS_JS = VIEWER / "node_modules" / "hls.js" / "dist" / "hls.min.js"  # npm ci, by scripts/setup
VIEWER_FILES = ("index.html", "viewer.js", "viewer.css")
PREVIEWS_PATH = "/previews/"  # proxied to the viewer service (viewer_service.py)
PUBLISH_CHECK = "/rtmp/may-publish"  # nginx-rtmp asks it before it takes a publisher


WORKER_USER = "nobody"


def _reachable_by_others(path: Path) -> bool:
    """Whether a user who owns nothing on the way can reach `path`: every existing folder on
    the way lets others through."""
    path = path.resolve()
    return all(folder.stat().st_mode & 0o001 for folder in [path, *path.parents] if folder.is_dir())


class RtmpServerError(RuntimeError):
    """nginx or its RTMP module is missing, the server did not come up, or its configuration
    is wrong."""


def worker_account(root: Path, data_dir: Path) -> pwd.struct_passwd | None:
    """The unprivileged account nginx's workers run as when it is started as root (WORKER_USER)
    if that account can reach everything they serve: `root` (HLS, temporary files, the viewer)
    and the data folder's public folder (playout states, viewer service socket). None: the workers
    keep the master's account (not root; or root, because a private folder is on the way)."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(WORKER_USER)
    except KeyError:
        return None
    try:
        grp.getgrgid(account.pw_gid)  # nginx's `user` directive names the group
    except KeyError:
        return None
    needed = [root, public_folder(data_dir)]
    return account if all(_reachable_by_others(path) for path in needed) else None


def public_folder(data_dir: Path) -> Path:
    """Where what nginx serves from the data folder lives: `nginx/` in it, or, when started as
    root with a private folder on the way to it (a checkout under /root), a folder of its own
    in /var/tmp that others can pass through, so that nginx's workers can drop root. `webtv up`
    puts nginx's whole root there."""
    data_dir = data_dir.resolve()
    if os.geteuid() != 0 or _reachable_by_others(data_dir):
        return data_dir / "nginx"
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"webtv-{digest}"


def make_public_folder(folder: Path) -> Path:
    """Creates `folder` (0755) or checks the one there is ours and writable by us only: in a
    shared /var/tmp, someone else could have made it first to plant files."""
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    info = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or info.st_uid != os.geteuid():
        raise RtmpServerError(f"{folder} exists but is not a folder of this account: remove it")
    if info.st_mode & 0o022:
        folder.chmod(0o755)
    return folder


def viewer_service_socket(data_dir: Path) -> Path:
    """Where the viewer service listens for what nginx proxies to it (previews, /api/, /xmltv/)."""
    return public_folder(data_dir) / "viewer-service.sock"


def publish_url(rtmp_port: int, slug: str) -> str:
    """Where a channel's playout publishes: the one stream name its application takes."""
    return f"rtmp://127.0.0.1:{rtmp_port}/{slug}/{STREAM_NAME}"


def viewer_state_path(data_dir: Path, slug: str) -> Path:
    """The copy of a channel's playout state the viewer reads (/state/<slug>.json)."""
    return public_folder(data_dir) / "state" / f"{slug}.json"


# What nginx-rtmp can push to, and nothing that could end or add a directive in its
# configuration (no spaces, quotes, `;`, braces).
MIRROR_URL = re.compile(r"rtmp://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[A-Za-z0-9._~/?=&%+-]+")


def mirror_urls(variable: str, value: str) -> list[str]:
    """Extra RTMP outputs of a channel (Twitch, YouTube...), with their stream keys, from its
    WEBTV_MIRRORS_<SLUG> (comma-separated; SLUG upper-case with underscores). An entry that
    is not a plain rtmp:// URL is refused, named by its position (it holds a stream key)."""
    urls = [url.strip() for url in value.split(",") if url.strip()]
    for number, url in enumerate(urls, 1):
        if not MIRROR_URL.fullmatch(url):
            raise RtmpServerError(
                f"{variable}: entry {number} is not an rtmp://host[:port]/app/<stream key> URL "
                "(rtmps:// cannot be pushed by nginx-rtmp; spaces, quotes, ';' and braces are "
                "refused)"
            )
    return urls


def mirrors_of(settings: Settings, slugs: list[str]) -> dict[str, list[str]]:
    return {slug: mirror_urls(*settings.mirror_variable_value(slug)) for slug in slugs}


def nginx_conf(
    root: Path,
    channels: Mapping[str, str],
    rtmp_port: int,
    http_port: int,
    data_dir: Path,
    mirrors: Mapping[str, list[str]],
    account: pwd.struct_passwd | None,
) -> str:
    """The configuration; each channel's application pushes what it receives to the channel's
    mirrors, so their stream keys are in this file (written 0600), never on a command line.
    The workers run as `account` (worker_account) if there is one."""
    applications = "\n".join(
        f"""
        application {slug} {{
            live on;
            record off;
            wait_key on;
            wait_video on;
            drop_idle_publisher 10s;
            allow publish 127.0.0.1;
            # Only the stream name the playout uses may be published: every stream of the
            # application is pushed to the mirrors, and a second one would go out there too.
            notify_method get;
            on_publish http://127.0.0.1:{http_port}{PUBLISH_CHECK};
            deny publish all;
            allow play all;
            hls on;
            hls_path {root}/hls/{slug};
            hls_fragment 2s;
            hls_playlist_length 12s;
            hls_continuous on;
            hls_cleanup on;
            # Fragments named by their stream timestamp (90 kHz): the viewer maps what it
            # plays to the playout's schedule with it.
            hls_fragment_naming timestamp;{_pushes(mirrors.get(slug, []))}
        }}"""
        for slug in channels
    )
    if account is not None:
        user = f"user {account.pw_name} {grp.getgrgid(account.pw_gid).gr_name};"
    else:  # not root, or root with a private folder on the way (see worker_account)
        user = "user root;" if os.geteuid() == 0 else ""
    return f"""load_module {RTMP_MODULE};
daemon off;
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 512; }}

rtmp {{
    server {{
        listen 127.0.0.1:{rtmp_port};
        chunk_size 4096;
{applications}
    }}
}}

http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    types {{
        text/html html;
        text/css css;
        application/javascript js;
        application/json json;
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    # Only what viewers send is limited: guide polls from many viewers behind one address pass.
    map $request_method $webtv_api_sender {{
        POST $binary_remote_addr;
        default "";
    }}
    limit_req_zone $webtv_api_sender zone=webtv_api:1m rate=5r/s;
    server {{
        listen 127.0.0.1:{http_port};
        location = / {{
            root {root}/viewer;
            try_files /index.html =404;
        }}
        location ~ ^/(viewer\\.js|viewer\\.css)$ {{
            root {root}/viewer;
        }}
        location = /vendor/hls.min.js {{
            alias {root}/viewer/hls.min.js;
        }}
        location = {PUBLISH_CHECK} {{
            if ($arg_name = "{STREAM_NAME}") {{
                return 204;
            }}
            return 403;
        }}
        location = /channels.json {{
            alias {root}/channels.json;
            add_header Cache-Control no-cache;
        }}
        location ~ ^/state/([a-z0-9-]+)\\.json$ {{
            alias {public_folder(data_dir)}/state/$1.json;
            add_header Cache-Control no-cache;
        }}
        location /hls/ {{
            alias {root}/hls/;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
        # Stage previews, from the bucket through the viewer service (nginx cannot sign S3
        # requests); its answers carry their own Cache-Control.
        location {PREVIEWS_PATH} {{
            proxy_pass http://unix:{viewer_service_socket(data_dir)};
        }}
        # Shot requests, the guide and the dump button: a viewer may send a few a second
        # (the queue has its own per-viewer rate, and the dump button's token is not
        # guessed at this pace); the service learns who from X-Real-IP.
        location /api/ {{
            limit_req zone=webtv_api burst=20 nodelay;
            limit_req_status 429;
            client_max_body_size 8k;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_pass http://unix:{viewer_service_socket(data_dir)};
        }}
        location /xmltv/ {{
            proxy_pass http://unix:{viewer_service_socket(data_dir)};
        }}
    }}
}}
"""


@dataclass
class RtmpServer:
    process: subprocess.Popen
    root: Path
    rtmp_port: int
    http_port: int

    def publish_url(self, slug: str) -> str:
        return publish_url(self.rtmp_port, slug)

    def hls_url(self, slug: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{slug}/{STREAM_NAME}.m3u8"

    def stop(self) -> None:
        stop_process(self.process)


def _pushes(urls: list[str]) -> str:
    return "".join(f"\n            push {url};" for url in urls)


def write_rtmp_config(
    root: Path,
    channels: Mapping[str, str],
    rtmp_port: int,
    http_port: int,
    data_dir: Path,
    mirrors: Mapping[str, list[str]] | None = None,
) -> Path:
    """Writes nginx.conf (and the viewer's channels.json) under `root` for `channels`
    (slug: title) and their `mirrors` (slug: RTMP URLs); returns the configuration's path.
    Playout states are served from `data_dir`."""
    root = make_public_folder(root.resolve())
    make_public_folder(public_folder(data_dir))
    account = worker_account(root, data_dir)
    # The viewer is copied beside: the installed package may be where the workers cannot go.
    (root / "viewer").mkdir(exist_ok=True)
    for source in [*(VIEWER / name for name in VIEWER_FILES), HLS_JS]:
        if source.exists():
            shutil.copyfile(source, root / "viewer" / source.name)
    for folder in ["tmp", "hls", *(f"hls/{slug}" for slug in channels)]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        if account is not None:  # the workers write HLS fragments and request bodies there
            os.chown(root / folder, account.pw_uid, account.pw_gid)
    guide = [{"slug": slug, "title": title} for slug, title in channels.items()]
    (root / "channels.json").write_text(json.dumps(guide, indent=2))
    conf = root / "nginx.conf"
    text = nginx_conf(root, channels, rtmp_port, http_port, data_dir, mirrors or {}, account)
    write_private(conf, text)
    # nginx-rtmp names a failing push's URL in its log.
    write_private(root / "error.log", "", append=True)
    return conf


def nginx_command(root: Path) -> list[str]:
    """nginx in the foreground on the configuration written under `root`."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists() or not RTMP_MODULE.exists():
        raise RtmpServerError(
            "nginx with the RTMP module is missing: apt-get install nginx libnginx-mod-rtmp"
        )
    root = root.resolve()
    return [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")]


def kill_leftover_workers(root: Path) -> list[int]:
    """Kills the workers an nginx master of `root` left behind when it was killed (they keep
    the ports open and would make the next master fail); returns their pids. Workers are
    found as `nginx` processes in the dead master's process group."""
    try:
        master = int((root / "nginx.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return []
    killed = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
            name = fields[0].split("(", 1)[1]
            process_group = int(fields[1].split()[2])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if name == "nginx" and process_group == master:
            pid = int(stat.parent.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def start_rtmp_server(
    root: Path,
    channels: Mapping[str, str],
    rtmp_port: int,
    http_port: int,
    data_dir: Path,
    mirrors: Mapping[str, list[str]] | None = None,
    timeout: float = 10.0,
) -> RtmpServer:
    """Writes the configuration under `root` for `channels` (slug: title) and their `mirrors`,
    starts nginx and waits until both ports answer. Playout states are served from
    `data_dir`."""
    command = nginx_command(root)
    busy = [port for port in (rtmp_port, http_port) if not port_is_free(port)]
    if busy:
        raise RtmpServerError(f"cannot start nginx: ports {busy} are in use")
    root = root.resolve()
    write_rtmp_config(root, channels, rtmp_port, http_port, data_dir, mirrors)
    log = (root / "nginx.out").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = RtmpServer(process, root, rtmp_port, http_port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (root / "error.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise RtmpServerError("nginx exited at start-up: " + " | ".join(tail))
        if not port_is_free(rtmp_port) and not port_is_free(http_port):
            return server
        time.sleep(0.1)
    server.stop()
    raise RtmpServerError(f"nginx did not listen within {timeout:.0f} s; see {root}/error.log")
