"""Playout: airing a channel's broadcast clips over RTMP without ever reconnecting."""
