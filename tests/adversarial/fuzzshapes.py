"""What the fuzz gate sends (``test_fuzz_gate.py``): for every member message
type, a generator of valid, malformed and adversarial instances, the shapes
of issue 26's findings among them (GET_TXS of one confirmed txid 1,000
times or with smell, GET_MEMPOOL floods, HEADERS with bits 161/999/0 and
wrong links, CHEESES with ``{"smell": []}``, ANNOUNCE_COMPACT with unknown
parents, bits 0 and 1,000 unknown txids, TXS full of invalid signatures,
HELLOs claiming huge work). The data they use is ``fuzzworld``'s.

A generator takes a ``Ctx`` (the world, the run's random source, the member,
the member's request being answered) and returns one message.
``GENERATORS`` maps each type to its generator; a type the member handles
without one is made by ``generic`` from its name alone (and
``test_every_handled_type_has_a_generator`` fails until it gets one).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, List

from fuzzworld import (
    BIG_HEIGHT,
    HUGE_WORK,
    MEMBER_HEIGHT,
    Ctx,
    _hex,
    bad_bits,
    bad_cheese,
    bad_header,
    damage,
    forged_header,
    junk_value,
    mutate,
    valid_cheese,
)

from cheesecoin.core.cheese import compact_announcement, header_of
from cheesecoin.core.tx import txid
from cheesecoin.p2p.manager import FEATURES
from cheesecoin.testing.fakes import ADDR, NETWORK

# -- the generators, one per message type --------------------------------------


def hello(ctx: Ctx) -> dict:
    rng = ctx.rng
    msg = {
        "type": "HELLO",
        "version": 1,
        "network": NETWORK.smell,
        "node_id": _hex(rng, 16),
        "port": 24331,
        "height": rng.randint(0, 10**6),
        "tip": ctx.any_smell(),
        "work": rng.choice([HUGE_WORK, "2", "10000"]),
    }
    if rng.random() < 0.7:
        every = [f for f in FEATURES if f != "tls"]  # a StringTransport cannot start TLS
        msg["features"] = rng.choice([every, [], ["headers"], ["x" * 32] * 32])
    return msg


def stats(ctx: Ctx) -> dict:
    return {"type": "STATS", "id": ctx.rng.randint(0, 10**9)}


def get_cheese(ctx: Ctx) -> dict:
    rng = ctx.rng
    if rng.random() < 0.5:
        return {
            "type": "GET_CHEESE",
            "sequence_number": rng.choice([0, 1, BIG_HEIGHT, 10**9]),
            "id": 1,
        }
    return {
        "type": "GET_CHEESE",
        "smell": ctx.pick([ctx.world.big["smell"], ctx.any_smell()]),
        "id": 2,
    }


def get_cheeses(ctx: Ctx) -> dict:
    rng, w = ctx.rng, ctx.world
    how = rng.randrange(4)
    if how == 0:
        return {
            "type": "GET_CHEESES",
            "from": rng.choice([0, 1, 10**6]),
            "count": rng.choice([1, 500]),
            "id": 3,
        }
    if how == 1:
        locator = [_hex(rng) for _ in range(rng.choice([1, 1000]))] + [NETWORK.smell]
        return {"type": "GET_CHEESES", "locator": locator[-1000:], "count": 500, "id": 4}
    if how == 2:  # the biggest body, many times over
        return {
            "type": "GET_CHEESES",
            "smells": [w.big["smell"]] * rng.choice([1, 50, 500]),
            "id": 5,
        }
    return {
        "type": "GET_CHEESES",
        "smells": [ctx.any_smell() for _ in range(rng.randint(1, 500))],
        "id": 6,
    }


def get_headers(ctx: Ctx) -> dict:
    rng = ctx.rng
    locator = rng.choice([[NETWORK.smell], [_hex(rng) for _ in range(1000)], [ctx.known_smell()]])
    return {"type": "GET_HEADERS", "locator": locator, "count": rng.choice([1, 2000]), "id": 7}


def get_mempool(ctx: Ctx) -> dict:
    return {"type": "GET_MEMPOOL", "id": ctx.rng.randint(0, 99)}


def get_txs(ctx: Ctx) -> dict:
    """Finding 1: one confirmed txid (the big cheese's last) 1,000 times, with and without smell."""
    rng, w = ctx.rng, ctx.world
    how = rng.randrange(5)
    last = w.big_txids[-1]
    if how == 0:
        msg: dict = {"type": "GET_TXS", "txids": [last] * 1000, "id": 8}
    elif how == 1:
        msg = {"type": "GET_TXS", "txids": [last], "smell": w.big["smell"], "id": 9}
    elif how == 2:
        msg = {
            "type": "GET_TXS",
            "txids": [txid(t) for t in w.mempool] + [_hex(rng) for _ in range(100)],
            "id": 10,
        }
    elif how == 3:  # every txid of the big cheese, without its smell
        msg = {"type": "GET_TXS", "txids": w.big_txids, "id": 11}
    else:
        msg = {
            "type": "GET_TXS",
            "txids": rng.sample(w.big_txids, 50) * 20,
            "smell": ctx.any_smell(),
            "id": 12,
        }
    return msg


def simple(kind: str) -> Callable[[Ctx], dict]:
    def make(ctx: Ctx) -> dict:
        msg = {"type": kind}
        if ctx.rng.random() < 0.5:
            msg["id"] = ctx.rng.randint(0, 10**6)
        return msg

    return make


def announce(ctx: Ctx) -> dict:
    cheese = valid_cheese(ctx) if ctx.rng.random() < 0.5 else bad_cheese(ctx)
    return {"type": "ANNOUNCE", "cheese": cheese}


def announce_compact(ctx: Ctx) -> dict:
    """Finding 2 and 3: bits 999/161/0, unknown parents, 1,000 unknown txids; and real ones."""
    rng, w = ctx.rng, ctx.world
    how = rng.randrange(5)
    if how == 0:
        return compact_announcement(valid_cheese(ctx))
    if how == 1:  # a real cheese with one txid it will never supply (finding 6)
        msg = compact_announcement(ctx.pick(w.chain[MEMBER_HEIGHT:]))
        msg["txids"] = msg["txids"] + [_hex(rng)]
        return msg
    header = forged_header(
        ctx, rng.choice([0, 161, 999, NETWORK.bits]), None if how == 2 else ctx.pick(w.chain)
    )
    n = rng.choice([0, 1, 1000])
    return {
        "type": "ANNOUNCE_COMPACT",
        "header": header,
        "miner": ADDR,
        "txids": [_hex(rng) for _ in range(n)],
    }


def tx(ctx: Ctx) -> dict:
    w = ctx.world
    return {
        "type": "TX",
        "tx": ctx.pick([ctx.pick(w.fresh), ctx.pick(w.mempool), ctx.pick(w.bad_sig)]),
    }


def stats_reply(ctx: Ctx) -> dict:
    rng = ctx.rng
    return {
        "type": "STATS_REPLY",
        "height": rng.randint(0, 10**6),
        "tip": ctx.any_smell(),
        "work": rng.choice([HUGE_WORK, "0", "200"]),
        "peers": rng.randint(0, 9),
        "id": ctx.reply_id(),
    }


def cheese_reply(ctx: Ctx) -> dict:
    asked = ctx.request.get("smell") if ctx.request else None
    w = ctx.world
    by_smell = {c["smell"]: c for c in w.chain + w.side + w.orphans}
    choices: List[Any] = [bad_cheese(ctx), valid_cheese(ctx)]
    if asked in by_smell:
        choices.append(by_smell[asked])
    return {"type": "CHEESE", "cheese": ctx.pick(choices), "id": ctx.reply_id()}


def cheeses_reply(ctx: Ctx) -> dict:
    """Finding 2: {"cheeses":[{"smell":[]}]}; chains that do not link; or the honest bodies."""
    rng, w = ctx.rng, ctx.world
    asked = (ctx.request or {}).get("smells")
    by_smell = {c["smell"]: c for c in w.chain + w.side}
    how = rng.randrange(5)
    if how == 0:
        cheeses: List[Any] = [{"smell": []}]
    elif how == 1 and isinstance(asked, list):
        cheeses = [by_smell[s] for s in asked if s in by_smell]
        if cheeses and rng.random() < 0.5:
            cheeses[rng.randrange(len(cheeses))] = bad_cheese(ctx)
    elif how == 2:
        cheeses = rng.sample(w.chain, 5)  # not one chain
    elif how == 3:
        start = rng.randrange(len(w.chain))
        cheeses = w.chain[start : start + rng.randint(1, 20)]
    else:
        cheeses = [bad_cheese(ctx) for _ in range(rng.randint(1, 5))]
    return {"type": "CHEESES", "cheeses": cheeses, "id": ctx.reply_id()}


def headers_reply(ctx: Ctx) -> dict:
    """Finding 2: bits 161/999/0 and wrong links, or the honest headers (sometimes too many)."""
    rng, w = ctx.rng, ctx.world
    how = rng.randrange(4)
    start = rng.randrange(MEMBER_HEIGHT - 2, len(w.chain))
    if how == 0:
        headers = [bad_header(ctx) for _ in range(rng.randint(1, 3))]
    elif how == 1:
        headers = [header_of(c) for c in w.chain[start : start + 10]]
        if headers:
            headers.insert(rng.randrange(len(headers) + 1), bad_header(ctx))
    elif how == 2:
        headers = [header_of(c) for c in w.chain[MEMBER_HEIGHT:]]
    else:
        headers = [junk_value(rng)] + [header_of(w.chain[0])] * rng.choice([1, 2001])
    return {"type": "HEADERS", "headers": headers, "id": ctx.reply_id()}


def pong(ctx: Ctx) -> dict:
    return {"type": "PONG", "id": ctx.reply_id()}


def mempool_reply(ctx: Ctx) -> dict:
    rng, w = ctx.rng, ctx.world
    txids = rng.choice(
        [
            [_hex(rng) for _ in range(5000)],
            [txid(t) for t in w.fresh + w.bad_sig],
            w.big_txids,
            [txid(w.mempool[0])] * 5000,
        ]
    )
    return {"type": "MEMPOOL", "txids": txids, "id": ctx.reply_id()}


def txs_reply(ctx: Ctx) -> dict:
    """Finding 9: transactions full of invalid signatures (and some good ones)."""
    rng, w = ctx.rng, ctx.world
    asked = set((ctx.request or {}).get("txids") or ())
    good = [t for t in w.fresh + w.mempool if txid(t) in asked]
    bad = [t for t in w.bad_sig if txid(t) in asked]  # exactly what was asked: no excuse to close
    txs: List[Any] = rng.choice(
        [w.bad_sig * 50, good, good + w.bad_sig, bad, bad, [junk_value(rng)] * 3]
    )
    return {"type": "TXS", "transactions": txs, "id": ctx.reply_id()}


def peers_reply(ctx: Ctx) -> dict:
    rng = ctx.rng
    peers: List[Any] = [
        {
            "host": f"198.51.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "port": rng.randint(1, 65535),
        }
        for _ in range(rng.choice([1, 10, 1000]))
    ]
    if rng.random() < 0.3:
        peers += [junk_value(rng), {"host": "", "port": 0}]
    return {"type": "PEERS", "peers": peers, "id": ctx.reply_id()}


def error_reply(ctx: Ctx) -> dict:
    rng = ctx.rng
    return {
        "type": "ERROR",
        "code": rng.choice(["not-found", "busy", "bad-message", "x" * 100, 7]),
        "message": "no",
        "id": ctx.reply_id(),
    }


# -- section 5.2: relay by inventory, compact relay modes ----------------------


def inv(ctx: Ctx) -> dict:
    """Txids we hold, or say we hold: new valid ones (the member asks for them),
    ones with bad signatures, unknown ones, 1,000 copies of one."""
    rng, w = ctx.rng, ctx.world
    how = rng.randrange(4)
    if how == 0:
        txids = [txid(t) for t in rng.sample(w.fresh, rng.randint(1, len(w.fresh)))]
    elif how == 1:
        txids = [txid(t) for t in w.bad_sig]
    elif how == 2:
        txids = [_hex(rng) for _ in range(rng.choice([1, 1000]))]
    else:
        txids = [txid(ctx.pick(w.fresh + w.mempool))] * 1000
    return {"type": "INV", "txids": txids}


def send_compact(ctx: Ctx) -> dict:
    return {"type": "SEND_COMPACT", "high_bandwidth": ctx.pick([True, False, True, 1, "yes"])}


def announce_header(ctx: Ctx) -> dict:
    """A real header (the member then asks GET_COMPACT), or one that breaks a rule."""
    rng = ctx.rng
    if rng.random() < 0.5:
        return {"type": "ANNOUNCE_HEADER", "header": header_of(valid_cheese(ctx))}
    header = bad_header(ctx) if rng.random() < 0.5 else forged_header(ctx, bad_bits(ctx))
    return {"type": "ANNOUNCE_HEADER", "header": header}


def get_compact(ctx: Ctx) -> dict:
    smell = ctx.pick([ctx.world.big["smell"], ctx.known_smell(), ctx.any_smell()])
    return {"type": "GET_COMPACT", "smell": smell, "id": ctx.rng.randint(0, 99)}


def compact_reply(ctx: Ctx) -> dict:
    """The compact form of the cheese asked for, one with a txid never supplied,
    a forged header, or another cheese's."""
    rng, w = ctx.rng, ctx.world
    asked = (ctx.request or {}).get("smell")
    by_smell = {c["smell"]: c for c in w.chain + w.side + w.orphans}
    cheese = by_smell.get(asked) or valid_cheese(ctx)
    msg = dict(compact_announcement(cheese), type="COMPACT", id=ctx.reply_id())
    how = rng.randrange(4)
    if how == 1:
        msg["txids"] = msg["txids"] + [_hex(rng)]
    elif how == 2:
        msg["header"] = forged_header(ctx, rng.choice([0, 161, NETWORK.bits]))
        msg["txids"] = [_hex(rng) for _ in range(rng.choice([0, 1000]))]
    elif how == 3:
        msg = dict(compact_announcement(valid_cheese(ctx)), type="COMPACT", id=ctx.reply_id())
    return msg


GENERATORS: Dict[str, Callable[[Ctx], Any]] = {
    "HELLO": hello,
    "STATS": stats,
    "GET_CHEESE": get_cheese,
    "GET_CHEESES": get_cheeses,
    "GET_HEADERS": get_headers,
    "GET_PEERS": simple("GET_PEERS"),
    "PING": simple("PING"),
    "CONSENSUS": simple("CONSENSUS"),
    "GET_MEMPOOL": get_mempool,
    "GET_TXS": get_txs,
    "ANNOUNCE": announce,
    "ANNOUNCE_COMPACT": announce_compact,
    "TX": tx,
    "STATS_REPLY": stats_reply,
    "CHEESE": cheese_reply,
    "CHEESES": cheeses_reply,
    "HEADERS": headers_reply,
    "PONG": pong,
    "MEMPOOL": mempool_reply,
    "TXS": txs_reply,
    "PEERS": peers_reply,
    "ERROR": error_reply,
    "INV": inv,
    "SEND_COMPACT": send_compact,
    "ANNOUNCE_HEADER": announce_header,
    "GET_COMPACT": get_compact,
    "COMPACT": compact_reply,
    "STARTTLS": simple("STARTTLS"),  # section 5.3: only right after two HELLOs listing tls
}


def generic(kind: str, ctx: Ctx) -> dict:
    """A message of a type known only by its name: junk fields, an id."""
    msg: dict = {"type": kind, "id": ctx.reply_id()}
    for _ in range(ctx.rng.randint(0, 4)):
        msg[
            ctx.pick(["smell", "txids", "cheese", "header", "locator", "count", _hex(ctx.rng, 4)])
        ] = junk_value(ctx.rng)
    return msg


def make(kind: str, ctx: Ctx) -> bytes:
    """One line (without its newline) of ``kind``: mostly as generated, else mutated or damaged."""
    gen = GENERATORS.get(kind)
    msg = gen(ctx) if gen is not None else generic(kind, ctx)
    roll = ctx.rng.random()
    if roll < 0.12:
        msg = mutate(msg, ctx.rng)
    # Half the lines as our encoder writes them (no spaces, "type" first): those are
    # the ones a member reads before or without decoding (a known cheese's
    # announcement, the keep-alive, the stack comparison), so the fast paths are fuzzed too.
    separators = (",", ":") if ctx.rng.random() < 0.5 else None
    line = json.dumps(msg, ensure_ascii=ctx.rng.random() < 0.5, separators=separators)
    line = line.encode("utf-8")
    if roll > 0.95:
        line = damage(line, ctx.rng)
    return line


def flood(kind: str, ctx: Ctx) -> List[bytes]:
    """Many lines of ``kind`` for one write. ANNOUNCE_COMPACT: finding 3's shape,
    60 headers with bits 0 or the network's on unknown parents, each listing
    1,000 unknown txids (each would open a GET_TXS); others: 20 made as usual."""
    if kind != "ANNOUNCE_COMPACT":
        return [make(kind, ctx) for _ in range(20)]
    rng, out = ctx.rng, []
    for _ in range(60):
        header = forged_header(ctx, rng.choice([0, NETWORK.bits]))
        txids = [_hex(rng) for _ in range(1000)]
        msg = {"type": "ANNOUNCE_COMPACT", "header": header, "miner": ADDR, "txids": txids}
        out.append(json.dumps(msg).encode())
    return out
