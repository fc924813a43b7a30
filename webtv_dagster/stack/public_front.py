"""The public front: Caddy (Debian's `caddy`) in front of the stack, with TLS.

Two sites on one name: the viewer (nginx's viewer port: the page, HLS, the viewer's API), open
to anyone; and the Dagster UI, which can launch any job, behind a password, on a port of its
own. Caddy takes the viewer's address as the client's (X-Forwarded-For, which nginx believes
from the trusted proxy alone: WEBTV_TRUSTED_PROXIES=127.0.0.1/32).

The UI's front stops what a password alone does not, since a browser sends a cached password
with any request a page of another site makes it send: GraphQL over GET (an <img> once launched
take_down_job), GraphQL posted as anything but JSON (a form), any request a page of another
origin sends (its Origin: a form, a fetch, a WebSocket); and requests for another name reach
neither site (DNS rebinding: TLS is for this name only).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class PublicFrontError(RuntimeError):
    """The front cannot be written as asked."""


@dataclass(frozen=True)
class PublicFront:
    site: str  # the public name: tv.example.org
    viewer_port: int  # nginx's viewer port on loopback (WEBTV_HLS_PORT)
    ui_port: int  # the Dagster UI on loopback
    public_viewer_port: int = 443
    public_ui_port: int = 8443
    ui_user: str = "operator"
    # Certificate and key files; none: Caddy gets a certificate for `site` itself (ACME).
    certificate: Path | None = None
    key: Path | None = None


def password_hash(password: str) -> str:
    """The bcrypt hash Caddy checks the UI's password against, made by Caddy itself (the
    password goes through its standard input, never a command line)."""
    if len(password) < 12:
        raise PublicFrontError("the UI's password must have at least 12 characters")
    caddy = shutil.which("caddy")
    if caddy is None:
        raise PublicFrontError("caddy is missing (Debian/Ubuntu: apt-get install caddy)")
    done = subprocess.run(
        [caddy, "hash-password"], input=f"{password}\n", capture_output=True, text=True
    )
    hashed = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not hashed.startswith("$2"):
        raise PublicFrontError(f"caddy could not hash the password: {done.stderr.strip()}")
    return hashed


def caddyfile(front: PublicFront, ui_password_hash: str) -> str:
    tls = f"\ttls {front.certificate} {front.key}\n" if front.certificate and front.key else ""
    ui_origin = f"https://{front.site}:{front.public_ui_port}"
    return f"""# Written by `webtv caddyfile`: the public front of the stack (docs/going-public.md).
{{
\tadmin off
}}

# The viewer: the page, HLS and the viewer's API, for anyone.
https://{front.site}:{front.public_viewer_port} {{
{tls}\treverse_proxy 127.0.0.1:{front.viewer_port}
}}

# The Dagster UI: it launches any job, so a password, and nothing another site's page can
# make a browser send.
https://{front.site}:{front.public_ui_port} {{
{tls}\tbasicauth {{
\t\t{front.ui_user} {ui_password_hash}
\t}}
\t@foreign {{
\t\theader Origin *
\t\tnot header Origin {ui_origin}
\t}}
\trespond @foreign "requests from pages of other sites are refused" 403
\t@graphql_get {{
\t\tmethod GET
\t\tpath /graphql*
\t\tnot header Upgrade websocket
\t}}
\trespond @graphql_get "GraphQL over GET is refused" 405
\t@graphql_not_json {{
\t\tmethod POST
\t\tpath /graphql*
\t\tnot header Content-Type application/json*
\t}}
\trespond @graphql_not_json "send GraphQL as application/json" 415
\treverse_proxy 127.0.0.1:{front.ui_port}
}}
"""
