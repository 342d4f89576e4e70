"""Participant codes and the site they belong to (SPEC section 1).

A participant code is a pseudonym ``<SITE>-<NNN>``: the site code, a hyphen,
three or more digits.  The site is read off the code in one place.
"""

from __future__ import annotations


def site_of(participant: str) -> str:
    """The site code a participant code starts with (``NFH`` of ``NFH-001``)."""
    return participant.partition("-")[0]
