"""Playout: a channel on air. Its playlist and take-downs, the sources of what airs next, the
library of local copies, the FFmpeg publisher, the state file, the playout process's lock,
and the air plan the guide is built from. It airs what production made and makes nothing."""
