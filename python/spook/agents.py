"""Coordination patterns for agents, over a ``spook.Group`` (a serial group whose schema
has the fields the pattern uses; ``AGENT_FIELDS`` lists them).

* ``Claims``: task claims with leases and fencing tokens (``claim``, ``renew``, ``release``);
* ``Auctions`` (open bids) and ``SealedAuctions`` (commit-reveal), a winner every member
  computes;
* ``Blackboard``: owned entries, watched by key or by field value;
* ``Barrier``: wait for every party or a deadline;
* ``Formation``: leaderless goals chosen by the members' votes.

Each is ``spook-agents`` underneath: the same code that runs in the simulator's seeds.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple, Union

from ._spook import (
    AuctionResult,
    Auctions,
    Barrier,
    BarrierOutcome,
    Blackboard,
    BoardWatcher,
    Choice,
    Claim,
    Claims,
    Formation,
    Posted,
    SealedAuctions,
)

__all__ = [
    "AuctionResult", "Auctions", "Barrier", "BarrierOutcome", "Blackboard", "BoardWatcher",
    "Choice", "Claim", "Claims", "Formation", "Posted", "SealedAuctions", "AGENT_FIELDS",
    "agent_fields",
]

#: The fields the patterns use, with their kinds (``spook-agents``' ``FIELDS``).
AGENT_FIELDS: Dict[str, str] = {
    "owner": "str", "state": "str", "best": "f64", "leader": "str", "arrived": "str",
    "goal": "str", "bidders": "str", "seal": "str", "bid": "str",
}


def agent_fields(
    own: Optional[Mapping[str, Union[str, Tuple[str, str]]]] = None,
) -> Dict[str, Union[str, Tuple[str, str]]]:
    """``own`` fields first, then those of ``AGENT_FIELDS`` it lacks: pass the result to
    ``spook.schema``.

    >>> list(agent_fields({"text": "str"}))[:2]
    ['text', 'owner']
    """
    out: Dict[str, Union[str, Tuple[str, str]]] = dict(own or {})
    for name, kind in AGENT_FIELDS.items():
        out.setdefault(name, kind)
    return out
