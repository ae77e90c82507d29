"""The exceptions Spook raises. Each is also the built-in exception it is a kind of
(``BadValue`` is a ``ValueError``, ``NodeLost`` a ``ConnectionError``), so code that
catches those keeps working.

The agent patterns' refusals (``Held``, ``Outbid``, ...) derive from ``PatternRefused``:
nothing was committed.
"""

from __future__ import annotations

__all__ = [
    "SpookError", "NotFound", "BadValue", "NotAllowed", "StorageUnavailable", "Refused",
    "NodeLost", "Unreachable", "AttachFailed", "ProtocolError", "ConfigError", "StartFailed",
    "PatternRefused", "Held", "NotHolder", "Missing", "Exists", "NotOpen", "WindowClosed",
    "StillOpen", "Outbid", "Taken", "NotOwner", "NotSealed", "OutcomeUnknown",
]


class SpookError(Exception):
    """Any failure of a Spook call."""


class NotFound(SpookError, LookupError):
    """No such group, field or session."""


class BadValue(SpookError, ValueError):
    """A value or field that does not fit the group's schema, or a malformed argument."""


class NotAllowed(SpookError, PermissionError):
    """The node does not allow this (administration over zenoh, a closed client)."""


class StorageUnavailable(SpookError, OSError):
    """The node cannot store it (full disk, broken ledger): nothing was written."""


class Refused(SpookError):
    """The node refused the request for the reason given."""


class NodeLost(SpookError, ConnectionError):
    """The node went away with the request unanswered.

    ``may_have_applied`` says whether a write could have landed before it went: read it back
    before writing it again. A transaction can be resent with the same seq: it executes once.
    """

    may_have_applied: bool = False


class Unreachable(NodeLost):
    """No node answers at the control socket: is spookd running?"""


class AttachFailed(SpookError, ConnectionError):
    """Attaching over zenoh failed (no node answered, or the handshake was refused)."""


class ProtocolError(SpookError):
    """The node answered something this client cannot read."""


class ConfigError(SpookError, ValueError):
    """A node configuration or key file that cannot be used."""


class StartFailed(SpookError, RuntimeError):
    """An embedded node could not start (its ledger is locked or broken, zenoh cannot listen)."""


class PatternRefused(SpookError):
    """An agent pattern's operation did not take effect; nothing was committed."""


class Held(PatternRefused):
    """Another agent holds the task (its lease has not ended)."""


class NotHolder(PatternRefused):
    """This agent does not hold the task (never did, released it, or its lease ended)."""


class Missing(PatternRefused):
    """No such task was posted."""


class Exists(PatternRefused):
    """An auction or barrier was opened on this register before."""


class NotOpen(PatternRefused):
    """Nobody opened an auction or barrier on this register."""


class WindowClosed(PatternRefused):
    """Bidding, sealing, revealing or the barrier's wait has ended."""


class StillOpen(PatternRefused):
    """The window still runs: no result yet."""


class Outbid(PatternRefused):
    """The bid does not beat the best one."""


class Taken(PatternRefused):
    """Another agent (or this one) holds the blackboard entry."""


class NotOwner(PatternRefused):
    """This agent does not own the blackboard entry."""


class NotSealed(PatternRefused):
    """The revealed bid does not match its seal."""


class OutcomeUnknown(PatternRefused):
    """The deadline passed with the outcome not known here yet: ask again later."""
