"""Audience: what viewers see and send. The web viewer page (viewer/), the viewer service behind
nginx (previews, shot requests, guide, XMLTV, dump button), the chat bots and the XMLTV
guide."""
