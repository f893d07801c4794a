"""The fuzz gate's world (issue 26): the valid data every run shares (an
honest stack with a cheese of 1,000 payments, a mempool, a side branch,
orphans, payments with bad signatures), the context a generator gets
(``Ctx``), and the pieces of adversarial shapes: malformed values and lines,
forged headers (bits 0, 161, 999, unknown or wrong parents), bad cheeses."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional

from cheesecoin.core.cheese import header_of, preimage_prefix, sha1_hex
from cheesecoin.core.tx import sign_tx, txid
from cheesecoin.testing.chain import key_from_seed, mine_child
from cheesecoin.testing.fakes import ADDR, BOB, KEY, NETWORK

MEMBER_HEIGHT = 44  # the member's stack at the start
HONEST_HEIGHT = 84  # the honest peer's: 40 cheeses more
BIG_HEIGHT = 42  # the cheese of BIG_PAYMENTS payments (as in issue 26's finding 1), on both stacks
BIG_PAYMENTS = 1000
MEMPOOL_TXS = 40  # valid payments in the member's mempool at the start
HUGE_WORK = "9" * 79
LATE_CHEESES = 20  # cheeses the honest member gets after the storm (the member must sync them)


def _hex(rng: random.Random, n: int = 40) -> str:
    return "%0*x" % (n, rng.getrandbits(4 * n))


@dataclass
class World:
    """The valid data every run shares (built once: signing takes a moment)."""

    chain: List[dict]  # the honest stack, heights 1..HONEST_HEIGHT (the Blue Cheese not included)
    mempool: List[dict]  # valid payments, in nonce order, for the member's mempool
    fresh: List[dict]  # more valid payments (after the mempool's nonces), sent as TX
    side: List[dict]  # a valid side branch off the member's stack, less work than the honest one
    orphans: List[dict]  # a valid branch whose first cheese is never sent: the rest are orphans
    bad_sig: List[dict]  # well formed payments whose signatures do not verify
    late: List[dict]  # the honest stack's next cheeses: it gets them after the storm, unannounced
    new_cheese: dict  # the next after those (two mempool payments): announced after the sync

    @property
    def member_chain(self) -> List[dict]:
        return self.chain[:MEMBER_HEIGHT]

    @property
    def big(self) -> dict:
        return self.chain[BIG_HEIGHT - 1]

    @property
    def big_txids(self) -> List[str]:
        return _txids_of(self.big["smell"], self)


_TXIDS: Dict[str, List[str]] = {}  # smell -> its transactions' txids (computed once)


def _txids_of(smell: str, w: "World") -> List[str]:
    if smell not in _TXIDS:
        cheese = next(c for c in w.chain if c["smell"] == smell)
        _TXIDS[smell] = [txid(tx) for tx in cheese["unit_of_information"]["transactions"]]
    return _TXIDS[smell]


@lru_cache(maxsize=1)
def world() -> World:
    """The honest stack: ADDR mines, pays BOB BIG_PAYMENTS times in one cheese, then more."""
    parent, chain = NETWORK.blue_cheese, []
    nonce = 0
    for height in range(1, HONEST_HEIGHT + 1):
        txs: List[dict] = []
        if height == BIG_HEIGHT:
            txs = [sign_tx(KEY, BOB, 1, 1, nonce + i, f"big{i}") for i in range(BIG_PAYMENTS)]
            nonce += BIG_PAYMENTS
        parent = mine_child(parent, NETWORK.bits, ADDR, txs)
        chain.append(parent)
    # The honest stack after the member's height confirms none of these: valid on either stack.
    pending = [sign_tx(KEY, BOB, 2, 1, nonce + i, f"m{i}") for i in range(MEMPOOL_TXS)]
    fresh = [sign_tx(KEY, BOB, 3, 1, nonce + MEMPOOL_TXS + i, f"f{i}") for i in range(20)]
    side = [mine_child(chain[MEMBER_HEIGHT - 8], NETWORK.bits, BOB, note="side")]
    for _ in range(3):
        side.append(mine_child(side[-1], NETWORK.bits, BOB))
    orphans = [mine_child(chain[MEMBER_HEIGHT - 4], NETWORK.bits, BOB, note="orphan-root")]
    for _ in range(6):
        orphans.append(mine_child(orphans[-1], NETWORK.bits, BOB))
    bad_sig = []
    for tx in fresh[:10]:
        bad = dict(
            tx, signature=tx["signature"][:-2] + ("00" if tx["signature"][-2:] != "00" else "11")
        )
        bad_sig.append(bad)
    stranger = key_from_seed("fuzz-stranger")  # no coins: valid signatures, refused by the ledger
    bad_sig += [sign_tx(stranger, BOB, 5, 1, i) for i in range(10)]
    late = [mine_child(chain[-1], NETWORK.bits, ADDR)]
    for _ in range(LATE_CHEESES - 1):
        late.append(mine_child(late[-1], NETWORK.bits, ADDR))
    new_cheese = mine_child(late[-1], NETWORK.bits, ADDR, pending[:2])
    return World(chain, pending, fresh, side, orphans, bad_sig, late, new_cheese)


@dataclass
class Ctx:
    """What a generator may use: the world, the random source, the member's
    state, and the member's request this message answers (if it answers one)."""

    world: World
    rng: random.Random
    member: Any  # the PeerManager under test
    request: Optional[dict] = None  # the member's request being answered
    ids: List[int] = field(default_factory=list)  # ids of the member's requests to this peer

    def pick(self, seq: List[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def reply_id(self) -> Any:
        if self.request is not None:
            return self.request.get("id")
        if self.ids and self.rng.random() < 0.5:
            return self.pick(self.ids)
        return self.pick([1, 2, 10**6, -1, "1", None, True, 2**80])

    def known_smell(self) -> str:
        return self.pick(self.world.member_chain)["smell"]

    def any_smell(self) -> str:
        return self.pick(
            [
                self.known_smell(),
                self.pick(self.world.chain)["smell"],
                _hex(self.rng),
                self.world.side[0]["smell"],
                NETWORK.smell,
            ]
        )


# -- malformations shared by every type ----------------------------------------


def junk_value(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            -1,
            0,
            2**70,
            1.5,
            "",
            "x" * 300,
            [],
            {},
            [[[[]]]],
            {"smell": []},
            "0" * 40,
            "\u0000",
            "\ud7ff",
            "Z" * 40,
        ]
    )


def mutate(msg: dict, rng: random.Random) -> dict:
    """``msg`` with one to three fields dropped, replaced by junk or added."""
    msg = copy.deepcopy(msg)
    for _ in range(rng.randint(1, 3)):
        keys = [k for k in msg if k != "type"]
        how = rng.random()
        if keys and how < 0.35:
            del msg[rng.choice(keys)]
        elif keys and how < 0.85:
            msg[rng.choice(keys)] = junk_value(rng)
        else:
            msg[rng.choice(["extra", "id", "x" * 40, "\u00e9"])] = junk_value(rng)
    return msg


def damage(line: bytes, rng: random.Random) -> bytes:
    """A line with bytes flipped, cut or inserted (framing and JSON errors)."""
    for _ in range(rng.randint(1, 3)):
        if not line:
            break
        i = rng.randrange(len(line))
        how = rng.random()
        if how < 0.4:
            line = line[:i] + bytes([line[i] ^ rng.randint(1, 255)]) + line[i + 1 :]
        elif how < 0.7:
            line = line[:i] + line[i + rng.randint(1, 8) :]
        else:
            line = (
                line[:i]
                + rng.choice([b"\r", b"\xff", b"\x00", b'"', b"{", b"9" * 30, b"\xed\xa0\x80"])
                + line[i:]
            )
    return line.replace(b"\n", b"")


# -- headers and cheeses -------------------------------------------------------


def forged_header(
    ctx: Ctx, bits: int, parent: Optional[dict] = None, seq: Optional[int] = None
) -> dict:
    """A header whose smell is the SHA1 of its preimage and, for bits up to 16, meets
    them (so only its bits, parent or link are wrong)."""
    rng = ctx.rng
    parent_smell = parent["smell"] if parent is not None else _hex(rng)
    if seq is None:
        seq = parent["sequence_number"] + 1 if parent else rng.randint(1, 10**4)
    stamp = (parent["timestamp"] + 10) if parent else NETWORK.blue_cheese["timestamp"] + 10 * seq
    ihash = _hex(rng)
    prefix = preimage_prefix(parent_smell, seq, stamp, bits, ihash)
    nonce = rng.getrandbits(32)
    smell = sha1_hex((prefix + str(nonce)).encode("ascii"))
    while 0 < bits <= 16 and int(smell, 16) >> (160 - bits):
        nonce += 1
        smell = sha1_hex((prefix + str(nonce)).encode("ascii"))
    return {
        "parent_smell": parent_smell,
        "sequence_number": seq,
        "timestamp": stamp,
        "bits": bits,
        "info_hash": ihash,
        "nonce": nonce,
        "smell": smell,
    }


def bad_bits(ctx: Ctx) -> int:
    return ctx.pick([0, 161, 999, 2, 160, 10**6])


def bad_header(ctx: Ctx) -> dict:
    """A header that breaks one rule: bits 0/161/999, an unknown or wrong parent, a wrong smell."""
    w, rng = ctx.world, ctx.rng
    how = rng.randrange(5)
    tip = ctx.pick(w.chain)
    if how == 0:
        return forged_header(ctx, bad_bits(ctx), tip)
    if how == 1:
        return forged_header(ctx, NETWORK.bits)  # an unknown parent
    if how == 2:  # a real header, its parent swapped (a wrong link)
        return dict(header_of(tip), parent_smell=ctx.pick(w.chain)["smell"])
    if how == 3:
        return dict(header_of(tip), smell=_hex(rng))
    return forged_header(ctx, NETWORK.bits, tip, seq=rng.choice([0, tip["sequence_number"] + 5]))


def fresh_orphan(ctx: Ctx) -> dict:
    """A valid cheese on a parent nobody has (a new orphan each time)."""
    phantom = {
        "smell": _hex(ctx.rng),
        "sequence_number": ctx.rng.randint(5, 200),
        "timestamp": NETWORK.blue_cheese["timestamp"] + 5000,
    }
    return mine_child(phantom, NETWORK.bits, BOB, note=_hex(ctx.rng, 8))


def valid_cheese(ctx: Ctx) -> dict:
    """A real cheese: of the honest stack (often the member's next), the side branch or
    the orphans."""
    w, rng = ctx.world, ctx.rng
    height = ctx.member.node.stack.height
    choices = [
        w.chain[min(height, len(w.chain) - 1)],
        ctx.pick(w.chain),
        ctx.pick(w.side),
        ctx.pick(w.orphans[1:]),
    ]
    return choices[rng.randrange(len(choices))]


def bad_cheese(ctx: Ctx) -> Any:
    w, rng = ctx.world, ctx.rng
    how = rng.randrange(6)
    if how == 0:
        return {"smell": []}
    if how == 1:
        return fresh_orphan(ctx)
    base = copy.deepcopy(ctx.pick(w.chain[MEMBER_HEIGHT - 2 :]))
    if how == 2:
        base["bits"] = bad_bits(ctx)
    elif how == 3:
        base["unit_of_information"]["transactions"] = list(w.bad_sig[: rng.randint(1, 10)])
    elif how == 4:
        base["smell"] = _hex(rng)
    else:
        base = mutate(base, rng)
    return base
