"""The project's media server: nginx with libnginx-mod-rtmp. RTMP in, one application per
channel; out over HTTP: HLS for each channel, the web viewer, each channel's playout state
for the viewer's program guide, and (from the viewer service) the clips' stage previews, shot
requests, the guide and XMLTV. Its configuration is generated; it runs in the foreground under
the process that started it, with everything it writes under one folder.

Publish to rtmp://HOST:RTMP_PORT/<channel slug>/live; watch http://HOST:HTTP_PORT/ (viewer) or
http://HOST:HTTP_PORT/hls/<slug>/live.m3u8 (any HLS player).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from webtv_dagster import audience
from webtv_dagster.public_site import (
    PREVIEWS_PATH,
    RTMP_STATISTICS,
    WATCHING_PATH,
    WORKER_USER,
    hls_fetch_socket,
    make_public_folder,
    monitoring_socket,
    public_folder,
    reachable_by_others,
    viewer_service_socket,
    watching_file,
)
from webtv_dagster.secrets import write_private
from webtv_dagster.settings import Settings
from webtv_dagster.stack.nginx_process import RTMP_MODULE, RtmpServerError, nginx_command

STREAM_NAME = "live"
VIEWER = Path(audience.__file__).with_name("viewer")  # the web viewer's page
HLS_JS = VIEWER / "node_modules" / "hls.js" / "dist" / "hls.min.js"  # npm ci, by scripts/setup
VIEWER_FILES = ("index.html", "viewer.js", "viewer.css")
PUBLISH_CHECK = "/rtmp/may-publish"  # nginx-rtmp asks it before it takes a publisher


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
    return account if all(reachable_by_others(path) for path in needed) else None


def publish_url(rtmp_port: int, slug: str) -> str:
    """Where a channel's playout publishes: the one stream name its application takes."""
    return f"rtmp://127.0.0.1:{rtmp_port}/{slug}/{STREAM_NAME}"


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


WORKER_CONNECTIONS = 8192
REQUESTS_PER_ADDRESS = 64  # generous: viewers behind one carrier-grade NAT share an address


def _real_client(trusted_proxies: Sequence[str]) -> str:
    """Behind a reverse proxy (Caddy, a load balancer) every viewer comes from its address:
    the viewer's own is taken from X-Forwarded-For, and only when the proxy is trusted (a
    viewer's own header is never believed)."""
    if not trusted_proxies:
        return ""
    lines = [f"    set_real_ip_from {network};" for network in trusted_proxies]
    return "\n".join([*lines, "    real_ip_header X-Forwarded-For;", "    real_ip_recursive on;"])


def nginx_conf(
    root: Path,
    channels: Mapping[str, str],
    rtmp_port: int,
    http_port: int,
    data_dir: Path,
    mirrors: Mapping[str, list[str]],
    account: pwd.struct_passwd | None,
    http_listen: str = "127.0.0.1",
    trusted_proxies: Sequence[str] = (),
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
# A crowd of idle connections (a flood from one address, or viewers' players) must not use up
# the worker: connections are cheap to hold, and idle ones are dropped within seconds.
worker_rlimit_nofile {WORKER_CONNECTIONS * 2};
events {{ worker_connections {WORKER_CONNECTIONS}; }}

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
{_real_client(trusted_proxies)}
    limit_req_zone $webtv_api_sender zone=webtv_api:1m rate=5r/s;
    # One address has at most this many requests in flight (a viewer's page and player hold a
    # few); a client that sends its request, reads its answer or idles slowly is dropped.
    limit_conn_zone $binary_remote_addr zone=webtv_per_address:1m;
    limit_conn webtv_per_address {REQUESTS_PER_ADDRESS};
    limit_conn_status 429;
    client_header_timeout 5s;
    client_body_timeout 5s;
    send_timeout 10s;
    keepalive_timeout 15s;
    reset_timedout_connection on;
    # A fragment never changes under its name (named by its timestamp): a CDN or a browser may
    # keep it for an hour (names come back only after the timeline's fold, 24 days on); a
    # playlist changes every fragment, so it may be kept a second.
    map $uri $webtv_hls_cache {{
        ~\\.ts$ "public, max-age=3600, immutable";
        ~\\.m3u8$ "public, max-age=1";
        default no-cache;
    }}
    # Each fetch of a channel's HLS playlist (a player asks every fragment, 2 s) is told to the
    # viewer service, which counts distinct players (audience/watching.py).
    map $uri $webtv_playlist_fetch {{
        ~^/hls/[a-z0-9-]+/[a-z0-9]+\\.m3u8$ 1;
        default 0;
    }}
    log_format webtv_hls escape=json
        '{{"uri":"$uri","status":$status,"client":"$remote_addr","agent":"$http_user_agent"}}';
    server {{
        listen {http_listen}:{http_port};
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
        # nginx-rtmp's statistics (clients per stream), for the stack's metrics: loopback only.
        location = {RTMP_STATISTICS} {{
            allow 127.0.0.1;
            deny all;
            # Through a reverse proxy on this machine (it adds the header) is not local.
            if ($http_x_forwarded_for) {{
                return 403;
            }}
            rtmp_stat all;
        }}
        location = {PUBLISH_CHECK} {{
            if ($arg_name = "{STREAM_NAME}") {{
                return 204;
            }}
            return 403;
        }}
        # What a player embedded in another site's page reads: any origin may (read only).
        location = /channels.json {{
            alias {root}/channels.json;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
        location ~ ^/state/([a-z0-9-]+)\\.json$ {{
            alias {public_folder(data_dir)}/state/$1.json;
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }}
        location /hls/ {{
            alias {root}/hls/;
            add_header Cache-Control $webtv_hls_cache;
            add_header Access-Control-Allow-Origin *;
            access_log syslog:server=unix:{hls_fetch_socket(data_dir)},nohostname,tag=webtv
                webtv_hls if=$webtv_playlist_fetch;
        }}
        location = {WATCHING_PATH} {{
            alias {watching_file(data_dir)};
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
            proxy_set_header Host $http_host;  # what the browser asked: its Origin must match
            proxy_pass http://unix:{viewer_service_socket(data_dir)};
        }}
        location /xmltv/ {{
            proxy_pass http://unix:{viewer_service_socket(data_dir)};
        }}
        # Monitoring (stack/metrics.py, answered by the watchdog): /metrics to loopback
        # clients or with the operator token, health to anyone (a load balancer, a probe).
        location ~ ^/(metrics|healthz|readyz)$ {{
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $http_x_forwarded_for;  # a proxy's mark, if any
            proxy_pass http://unix:{monitoring_socket(data_dir)};
        }}
    }}
}}
"""


def _pushes(urls: list[str]) -> str:
    return "".join(f"\n            push {url};" for url in urls)


def write_rtmp_config(
    root: Path,
    channels: Mapping[str, str],
    rtmp_port: int,
    http_port: int,
    data_dir: Path,
    mirrors: Mapping[str, list[str]] | None = None,
    http_listen: str = "127.0.0.1",
    trusted_proxies: Sequence[str] = (),
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
    text = nginx_conf(
        root,
        channels,
        rtmp_port,
        http_port,
        data_dir,
        mirrors or {},
        account,
        http_listen,
        trusted_proxies,
    )
    write_private(conf, text)
    # nginx-rtmp names a failing push's URL in its log.
    write_private(root / "error.log", "", append=True)
    return conf


def write_stack_rtmp_config(
    settings: Settings, titles: Mapping[str, str], root: Path | None = None
) -> Path:
    """Writes the stack's RTMP/HLS server configuration for the channels `titles` (slug:
    title) with the settings' ports and mirrors, under `root` (default: the data folder's
    public folder); returns the root."""
    root = root or public_folder(settings.data_dir)
    mirrors = mirrors_of(settings, list(titles))
    write_rtmp_config(
        root,
        titles,
        settings.rtmp_port,
        settings.hls_port,
        settings.data_dir,
        mirrors,
        settings.http_listen,
        [str(network) for network in settings.trusted_proxies],
    )
    return root


def reload_nginx(root: Path) -> None:
    """Has the running nginx of `root` take its configuration as written now, without a
    restart: its master checks it and starts new workers for new connections, while the old
    ones keep theirs (the channels on air stay connected). Raises RtmpServerError, the
    configuration refused, when `nginx -t` finds it wrong (the running one goes on)."""
    checked = subprocess.run(
        [*nginx_command(root), "-t", "-q"], capture_output=True, text=True, timeout=30
    )
    if checked.returncode != 0:
        raise RtmpServerError(f"nginx refuses its new configuration: {checked.stderr.strip()}")
    try:
        master = int((root / "nginx.pid").read_text())
        os.kill(master, signal.SIGHUP)
    except (OSError, ValueError) as error:
        raise RtmpServerError(f"no nginx runs on {root} to reload ({error})") from None
