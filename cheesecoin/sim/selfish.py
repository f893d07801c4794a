"""A selfish mining pool (Eyal and Sirer, "Majority is not Enough", 2014) on
the real member code.

``SelfishStrategy`` is their Algorithm 1 over heights, with no network in it
(unit-tested with fakes). ``SelfishPool`` runs it for one simulated member:

- the pool's own cheeses go to a *private* ``MemberNode`` (the pool's
  branch: it mines on its best tip, which is its own branch while it leads,
  first seen on a tie), which also gets every cheese and payment its real
  node accepts;
- the real member (node, peer manager, relay) is the pool's public face: a
  private cheese is handed to it, as a mined cheese (``MINED``), only when
  the strategy says publish, and the real relay announces it then. Holding
  the cheeses outside the real node (not only back from the relay) keeps
  them out of what the real member tells its peers otherwise (HELLO and
  STATS tips, headers and bodies it serves);
- the strategy hears of each honest cheese when it reaches the pool's real
  node, before the node adds it (a wrapper of that one node's
  ``submit_cheese``): a cheese published in a race is then the real node's
  first seen, so its relay announces it, and the honest one, seen second,
  is not relayed by the pool. For the same reason the pool does not relay
  others' cheeses before validating them (compact early relay is off for
  it): it relays what becomes its real node's best, as a version-1 member.

gamma is measured, not given: of the honest cheeses found while the pool is
in a race (it published one cheese against an honest one of the same
height), the share whose parent is the pool's cheese.
"""

from __future__ import annotations

import random
from typing import Any, List, NamedTuple, Optional, Tuple

from cheesecoin.core.errors import InvalidCheese, InvalidTx, StorageError
from cheesecoin.core.node import MINED, MemberNode
from cheesecoin.core.stack import CheeseStack

# What the strategy did on its last event (for tests and the run's counts).
KEEP = "keep"  # a pool cheese kept private
WIN = "publish-all (won the race)"  # a pool cheese found during a race: published with the rest
IGNORE = "ignore"  # an honest cheese that does not lengthen the public stack
ADOPT = "adopt"  # lead 0 (or behind): mine on the public stack
RACE = "race"  # lead 1: publish the one private cheese against the honest one
PUBLISH_ALL = "publish-all"  # lead 2: publish the whole branch, which is then one ahead
PUBLISH_ONE = "publish-one"  # lead > 2: publish the first unpublished cheese
END = "publish-rest"  # the run stops mining: whatever is private is published


def revenue_theory(alpha: float, gamma: float) -> float:
    """Eyal and Sirer's relative revenue R(alpha, gamma) of a selfish pool.

    Their formula holds below half the power (at 0.5 it is 1); a pool with half
    or more takes the whole stack, so from 0.5 up it is 1 (a share measured in a
    short run can be that high; the formula's denominator vanishes near 0.555)."""
    a, g = alpha, gamma
    if a >= 0.5:
        return 1.0
    return (a * (1 - a) ** 2 * (4 * a + g * (1 - 2 * a)) - a**3) / (1 - a * (1 + (2 - a) * a))


class SelfishStrategy:
    """Eyal and Sirer's Algorithm 1 over heights: when to publish which cheese.

    ``lead`` is, at an honest cheese, the private branch's height over the
    public stack's before it (their Delta_prev): 0 adopt, 1 race, 2 publish
    all, more publish one. An honest cheese that lengthens the public stack
    by more than one (a batch) publishes every private cheese up to its
    height, which is what one step at a time would have published."""

    def __init__(self, height: int = 0) -> None:
        self.public_height = height  # the best height the other members know of
        self.private_height = height  # the pool's tip (its own branch, or the public one)
        self.unpublished: List[Tuple[int, str]] = []  # (height, smell), oldest first
        self.racing = False  # a published cheese ties an honest one (their state 0')
        self.last = ADOPT

    @property
    def lead(self) -> int:
        return self.private_height - self.public_height

    def on_pool_cheese(self, height: int, smell: str) -> List[str]:
        """The pool found ``smell`` at ``height`` (on its private tip): what to publish now."""
        lead_before = self.lead
        self.private_height = height
        self.unpublished.append((height, smell))
        if self.racing and lead_before == 0:
            self.racing = False
            self.last = WIN
            return self._publish_up_to(height)
        self.last = KEEP
        return []

    def on_public_cheese(self, height: int) -> List[str]:
        """An honest cheese at ``height`` reached the pool: what to publish first."""
        if height <= self.public_height:
            self.last = IGNORE
            return []
        self.public_height = height
        self.racing = False
        lead = self.private_height - height  # Delta_prev - 1 for a one-step lengthening
        if lead < 0:
            self.last = ADOPT
            self.private_height = height
            self.unpublished.clear()
            return []
        if lead == 0:
            self.last = RACE
            self.racing = True
            return self._publish_up_to(height)
        if lead == 1:
            self.last = PUBLISH_ALL
            return self._publish_up_to(self.private_height)
        self.last = PUBLISH_ONE
        return self._publish_up_to(height)

    def publish_all(self) -> List[str]:
        """Every private cheese (the end of a run: nothing is left to race for)."""
        self.racing = False
        self.last = END
        return self._publish_up_to(self.private_height)

    def _publish_up_to(self, height: int) -> List[str]:
        out = [smell for h, smell in self.unpublished if h <= height]
        self.unpublished = [(h, s) for h, s in self.unpublished if h > height]
        if out:
            self.public_height = max(self.public_height, height)
        return out


class ModelRun(NamedTuple):
    """One run of ``model_run``: the pool's share of the settled stack and how
    many of the run's cheeses the pool found (its measured alpha is
    ``pool_found / cheeses``)."""

    share: float
    pool_found: int


def model_run(alpha: float, gamma: float, cheeses: int, rng: random.Random) -> ModelRun:
    """The pool's share of the final stack, and its count of cheeses found,
    when ``SelfishStrategy`` plays in Eyal and Sirer's own model (no network:
    everyone hears of a cheese at once; in a race a share ``gamma`` of the
    honest power mines on the pool's cheese).
    The same strategy object as the simulated pool, so its long-run share is
    R(alpha, gamma); over a few thousand cheeses it shows the model's own spread."""
    s = SelfishStrategy(0)
    pool_branch = honest_branch = 0  # cheeses of each branch since the last common tip
    pool = honest = 0  # cheeses on the settled stack
    found = 0  # cheeses the pool found (its alpha measured: found / cheeses)
    for i in range(cheeses):
        if rng.random() < alpha:
            found += 1
            s.on_pool_cheese(s.private_height + 1, str(i))
            pool_branch += 1
            if s.last == WIN:  # its branch is the longer one: settled
                pool, pool_branch, honest_branch = pool + pool_branch, 0, 0
            continue
        on_pool = s.racing and rng.random() < gamma
        s.on_public_cheese(s.public_height + 1)
        if on_pool:  # the pool's branch is settled under the honest cheese
            pool, honest = pool + pool_branch, honest + 1
            pool_branch = honest_branch = 0
        elif s.last == ADOPT:  # the honest branch is settled
            honest, pool_branch, honest_branch = honest + honest_branch + 1, 0, 0
        elif s.last == PUBLISH_ALL:  # the pool's branch is one longer: settled
            pool, pool_branch, honest_branch = pool + pool_branch, 0, 0
        else:  # a race or publish-one: both branches still open
            honest_branch += 1
    # The end: the pool publishes all; a tie still open counts for neither.
    if pool_branch > honest_branch:
        pool += pool_branch
    elif honest_branch > pool_branch:
        honest += honest_branch
    return ModelRun(pool / (pool + honest) if pool + honest else 0.0, found)


def model_revenue(alpha: float, gamma: float, cheeses: int, rng: random.Random) -> float:
    """``model_run``'s share alone (the same draws from ``rng``)."""
    return model_run(alpha, gamma, cheeses, rng).share


class SelfishPool:
    """One member of a simulation mining selfishly with share ``alpha``."""

    def __init__(self, world: Any, member: Any, alpha: float, peers: int) -> None:
        self.world = world
        self.member = member
        self.alpha = alpha
        real = member.node
        self.real = real
        stack = CheeseStack(world.network, clock=world.clock.seconds)
        self.private = MemberNode(
            stack,
            clock=world.clock.seconds,
            node_id="%032x" % random.Random(world.config.seed).getrandbits(128),
        )
        self.strategy = SelfishStrategy(real.stack.height)
        self.found: List[str] = []  # every cheese the pool found
        self.race_smell: Optional[str] = None  # the pool's cheese in the current race
        self.tie_cheeses = 0  # honest cheeses found during a race
        self.tie_on_pool = 0  # ... whose parent is the pool's cheese
        self.decisions: dict = {}  # decision -> how many times
        self.publish_failed = 0  # published cheeses the real node refused (none expected)
        manager = member.manager
        manager.target_peers = peers
        # "how many members the pool connects to": its own dials only
        manager.admission.max_inbound = 0
        manager.relay.relay_early = lambda *args, **kw: False
        self._add = member.submit_uncharged  # the real node's submit_cheese, without CPU time
        real.submit_cheese = self._arriving
        real.cheese_listeners.append(self._mirror)
        real.tx_listeners.append(self._mirror_tx)

    # -- the real node's side ---------------------------------------------------------

    def _arriving(
        self,
        cheese: Any,
        source: Any = None,
        check_signatures: bool = True,
        ihash: Optional[str] = None,
    ) -> Any:
        """A cheese for the real node: an honest one first moves the strategy."""
        if source != MINED and isinstance(cheese, dict):
            stack = self.real.stack
            parent = stack.nodes.get(cheese.get("parent_smell"))
            smell = cheese.get("smell")
            if (
                parent is not None
                and not parent.invalid
                and isinstance(smell, str)
                and smell not in stack.nodes
            ):
                self._publish(self.strategy.on_public_cheese(parent.height + 1))
        return self.member.submit_cheese(cheese, source, check_signatures, ihash)

    def _mirror(self, result: Any, source: Any) -> None:
        """Every cheese the real node accepts goes to the private node too."""
        private = self.private.stack
        for smell in result.accepted:
            if smell in private.nodes:
                continue
            cheese = self.real.stack.get_cheese(smell)
            if cheese is not None:
                try:
                    self.private.submit_cheese(cheese, "public")
                except InvalidCheese:  # pragma: no cover - the real node accepted it
                    pass

    def _mirror_tx(self, tx_id: str, tx: dict, source: Any) -> None:
        try:
            self.private.submit_tx(tx, "public")
        except InvalidTx:
            pass  # spent on the private branch, or the pool's mempool is full

    # -- mining ----------------------------------------------------------------------------

    def mined(self, cheese: dict) -> None:
        """The pool found ``cheese`` (a child of its private tip)."""
        self.found.append(cheese["smell"])
        self.private.submit_cheese(cheese, MINED)
        self._publish(self.strategy.on_pool_cheese(cheese["sequence_number"], cheese["smell"]))

    def honest_found(self, parent_smell: str) -> None:
        """An honest miner found a cheese on ``parent_smell``: gamma's count."""
        if self.strategy.racing:
            self.tie_cheeses += 1
            if parent_smell == self.race_smell:
                self.tie_on_pool += 1

    def publish_rest(self) -> None:
        """The run stops mining: the pool publishes what it holds."""
        self._publish(self.strategy.publish_all())

    def _publish(self, smells: List[str]) -> None:
        decision = self.strategy.last
        self.decisions[decision] = self.decisions.get(decision, 0) + 1
        if decision == RACE and smells:
            self.race_smell = smells[-1]
        for smell in smells:
            cheese = self.private.stack.get_cheese(smell)
            if cheese is None:
                continue
            try:
                self._add(cheese, MINED)  # the real relay announces it
            except (InvalidCheese, StorageError):
                # Never raised into the honest peer's delivery that moved the
                # strategy (it would be blamed); counted in the figures instead.
                self.publish_failed += 1

    # -- figures ---------------------------------------------------------------------------

    def figures(self, on_best: List[str]) -> dict:
        """The pool's figures at the end of the run (``on_best``: the best stack's smells).

        Like gamma, alpha is also measured: the pool's share of every cheese
        found in the run (the world's ``mined``: the pool's and the honest
        miners'), so ``revenue_theory_measured`` leaves out the run's luck in
        how many cheeses the pool itself found; ``revenue_theory`` is at the
        configured alpha, as issue 31 names it."""
        ours = set(self.found)
        share = sum(1 for s in on_best if s in ours) / len(on_best) if on_best else 0.0
        gamma = self.tie_on_pool / self.tie_cheeses if self.tie_cheeses else 0.0
        mined = self.world.mined
        alpha_measured = len(self.found) / mined if mined else 0.0
        return {
            "alpha": self.alpha,
            "alpha_measured": round(alpha_measured, 4),
            "gamma_measured": round(gamma, 4),
            "revenue_share": round(share, 4),
            "revenue_theory": round(revenue_theory(self.alpha, gamma), 4),
            "revenue_theory_measured": round(revenue_theory(alpha_measured, gamma), 4),
            "pool_found": len(self.found),
            "tie_cheeses": self.tie_cheeses,
            "publish_failed": self.publish_failed,
            "decisions": dict(sorted(self.decisions.items())),
        }
