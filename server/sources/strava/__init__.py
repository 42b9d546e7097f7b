"""Strava: the source (source.py) and what it is made of: the token file (tokens.py), OAuth (oauth.py), the rate
limits (limits.py), the activities parsed (activities.py); the one-time `setup` command (setup_cli.py)."""

from server.sources.strava.activities import build_strava_data, parse_activities
from server.sources.strava.limits import next_quarter_hour_s
from server.sources.strava.oauth import REAUTH_MESSAGE, StravaAuth
from server.sources.strava.source import StravaSource
from server.sources.strava.tokens import DEMO_TOKEN_FILE_NAME, TOKEN_FILE_NAME, TokenState, TokenStore

__all__ = [
    "DEMO_TOKEN_FILE_NAME",
    "REAUTH_MESSAGE",
    "TOKEN_FILE_NAME",
    "StravaAuth",
    "StravaSource",
    "TokenState",
    "TokenStore",
    "build_strava_data",
    "next_quarter_hour_s",
    "parse_activities",
]
