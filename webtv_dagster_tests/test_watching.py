"""Counting who watches: nginx's log of each playlist served, as it sends it (a syslog datagram),
read into distinct players in a sliding window, with the junk a public port gets left out."""

import json

from webtv_dagster.audience.watching import MOST_PLAYERS, HlsPlayers, playlist_fetch

SLUGS = ["test-llamas", "test-ocean"]


def datagram(uri: str, status: int = 200, client: str = "203.0.113.7", agent: str = "Firefox"):
    fetch = {"uri": uri, "status": status, "client": client, "agent": agent}
    return f"<190>Dec  5 23:40:01 webtv: {json.dumps(fetch)}".encode()


def test_a_served_playlist_names_its_channel_and_a_digest_of_its_player():
    channel, player = playlist_fetch(datagram("/hls/test-llamas/live.m3u8"), SLUGS)
    assert channel == "test-llamas" and len(player) == 16 and "203.0.113.7" not in player
    same = playlist_fetch(datagram("/hls/test-llamas/live.m3u8"), SLUGS)[1]
    other_browser = playlist_fetch(datagram("/hls/test-llamas/live.m3u8", agent="Chrome"), SLUGS)
    assert same == player != other_browser[1]


def test_refusals_unknown_channels_and_junk_are_not_players():
    for junk in (
        datagram("/hls/test-llamas/live.m3u8", status=404),
        datagram("/hls/no-such-channel/live.m3u8"),
        datagram("/hls/test-llamas/deeper/live.m3u8"),
        b"<190>Dec  5 23:40:01 webtv: not json",
        b"\xff\xfe garbage",
        b'<190>Dec  5 23:40:01 webtv: {"uri": 7}',
    ):
        assert playlist_fetch(junk, SLUGS) is None, junk


def test_players_count_within_the_window_and_a_flood_is_bounded():
    players = HlsPlayers(SLUGS, window=30)
    for at in (0, 2, 4):
        players.fetched("test-llamas", "a", at)  # one player, asking every fragment
    players.fetched("test-llamas", "b", 10)
    players.fetched("test-ocean", "c", 10)
    assert players.counts(20) == {"test-llamas": 2, "test-ocean": 1}
    assert players.counts(35) == {"test-llamas": 1, "test-ocean": 1}  # a left at 4 s
    assert players.counts(41) == {"test-llamas": 0, "test-ocean": 0}
    for number in range(MOST_PLAYERS + 10):
        players.fetched("test-ocean", str(number), 50)
    assert players.counts(50)["test-ocean"] == MOST_PLAYERS
