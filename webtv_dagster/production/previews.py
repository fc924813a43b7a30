"""Stage previews by URL: each clip's previews (contact sheets, the music's waveform) are objects
beside the clip in the bucket (clips.preview_name), so retention removes them with the clip; the
Dagster UI links them as `<public URL>/previews/<slug>/<clip key>/<name>`, and the viewer service
(audience/viewer_service.py), behind the viewer's nginx (which cannot sign S3 requests),
answers those paths from the bucket: only preview objects, never naming an object key or a
credential.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from webtv_dagster import clips
from webtv_dagster.clips import CLIP_KEY_PATTERN, ClipId
from webtv_dagster.public_site import PREVIEWS_PATH
from webtv_dagster.settings import Settings


class PublicUrlError(ValueError):
    """The public URL previews are linked at is unusable; the message says why."""


def public_base_url(settings: Settings) -> str:
    """The viewer's address as an operator's browser reaches it (WEBTV_PUBLIC_URL, default the
    loopback viewer), without a trailing slash; one with credentials is refused, since the
    links it makes are stored in Dagster's event log for anyone with the UI to read."""
    url = (settings.public_url or f"http://127.0.0.1:{settings.hls_port}").rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise PublicUrlError(f"WEBTV_PUBLIC_URL {url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise PublicUrlError(
            "WEBTV_PUBLIC_URL must be a plain address (no user, password, query or fragment): "
            "preview links are shown to everyone who can open the Dagster UI"
        )
    return url


def preview_markdown(base_url: str, clip: ClipId, name: str) -> str:
    """The Markdown image of a clip's preview, by URL (a few dozen bytes of metadata)."""
    alt = "waveform" if clips.preview_content_type(name) == "image/png" else "frames"
    return f"![{alt}]({base_url}{PREVIEWS_PATH}{clip.channel}/{clip.key}/{name})"


def preview_object_key(path: str) -> str | None:
    """The object key of the preview a request path names, or None when it names anything else
    (another object of the clip, another path, an encoded or relative name)."""
    if not path.startswith(PREVIEWS_PATH):
        return None
    parts = path[len(PREVIEWS_PATH) :].split("/")
    if len(parts) != 3:
        return None
    slug, clip_key, name = parts
    match = CLIP_KEY_PATTERN.fullmatch(clip_key)
    if match is None or match["slug"] != slug or name not in clips.PREVIEW_NAMES:
        return None
    return ClipId.parse(clip_key).object_key(name)
