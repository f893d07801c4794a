"""The cheese stack: a tree of known cheeses and the best stack through it.

Pure Python, no Twisted (docs/protocol.md section 3). ``CheeseStack`` keeps every
valid cheese it has seen as a ``Node`` in a tree, follows the branch with the
most cumulative work (first seen wins ties), keeps the ledger at its tip,
reorganises with ledger rollback and holds a bounded pool of orphans.

Its other jobs live apart, each in its own module, and the stack calls them:

- the validity rules (``check_context_free``, ``check_link``,
  ``next_bits``): ``cheesecoin.core.rules``;
- what it serves to peers (headers, ranges, locators, texts, transactions by
  txid): ``cheesecoin.core.serving`` (``self.serving``);
- an address's history: ``cheesecoin.core.history``;
- the mining template: ``cheesecoin.mining.templates``.

The methods of the same names here are one-line delegations, kept because
the peer layer, the API and the tools call them on the stack.

Bodies live in a store (a ``cheesecoin.core.interfaces.CheeseStore``:
``cheesecoin.core.memstore.MemoryStore`` in memory,
``cheesecoin.storage.sqlite.SqliteStore`` on disk); every accepted cheese is
written in one store transaction together with the tip it leads to.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Tuple, Type

from cheesecoin.core import rules
from cheesecoin.core.cheese import Network, info_hash
from cheesecoin.core.errors import InvalidCheese, StorageError
from cheesecoin.core.interfaces import CheeseStore, Source, stored_body
from cheesecoin.core.ledger import Ledger
from cheesecoin.core.memstore import MemoryStore
from cheesecoin.core.orphans import OrphanPool
from cheesecoin.core.serving import StackServing, index_txs, tx_height, unindex_txs
from cheesecoin.core.tree import AddResult, Node
from cheesecoin.core.tx import verify_signature


class CheeseStack:
    """All known cheeses as a tree, the best stack, its ledger and its indexes."""

    def __init__(
        self,
        network: Network,
        store: Optional[CheeseStore] = None,
        clock: Callable[[], float] = time.time,
        max_orphans: int = 256,
        index_txs: bool = True,
        max_invalid: int = 100_000,
    ) -> None:
        self.network = network
        self.store: CheeseStore = store if store is not None else MemoryStore()
        self.clock = clock
        self.index_txs = index_txs
        self.nodes: Dict[str, Node] = {}
        self.main: List[Node] = []
        self.ledger = Ledger()
        self.orphans = OrphanPool(max_orphans)
        self.invalid: "OrderedDict[str, str]" = OrderedDict()
        self.max_invalid = max_invalid
        # txid -> its place on the best stack (core.serving.pack)
        self.tx_index: Dict[str, int] = {}
        self.serving = StackServing(self)
        self._order = 0
        self._best: Optional[Node] = None
        self._pending_invalid: List[Tuple[str, str]] = []
        self._uncommitted: Dict[str, dict] = {}
        self._last_error = ""
        self._load()

    # -- loading ---------------------------------------------------------------

    def _new_node(self, cheese: dict, parent: Optional[Node], ihash: Optional[str] = None) -> Node:
        if ihash is None:
            ihash = info_hash(cheese["unit_of_information"])
        node = Node(
            cheese["smell"],
            parent,
            cheese["sequence_number"],
            cheese["bits"],
            cheese["timestamp"],
            self._order,
            ihash,
            cheese["nonce"],
        )
        self._order += 1
        self.nodes[node.smell] = node
        return node

    def _load(self) -> None:
        blue = self.network.blue_cheese
        rows, tip_smell, invalid = self.store.load()
        rows = iter(rows)  # stored cheeses are streamed: only their nodes stay in memory
        first = next(rows, None)
        if first is not None and first[0]["smell"] != blue["smell"]:
            raise ValueError("the stored stack belongs to another network")
        genesis = self._new_node(blue, None)
        self.main = [genesis]
        self._best = genesis
        if first is None:
            self.store.commit([(genesis, blue)], [], genesis.smell)
        for cheese, ihash in rows:
            parent = self.nodes.get(cheese["parent_smell"])
            if parent is None:
                raise ValueError(f"stored cheese {cheese['smell']} has no stored parent")
            node = self._new_node(cheese, parent, ihash)
            if cheese["smell"] in invalid or parent.invalid:
                node.invalid = invalid.get(cheese["smell"], "bad-parent")
                self._remember_invalid(node.smell, node.invalid)
        # Reload to the stored tip without re-checking signatures, then let the
        # usual rule (most work, first seen) decide.
        target = self.nodes.get(tip_smell or "")
        if target is not None and not target.invalid:
            self._best = target
        else:
            self._best = self._scan_best()
        self._activate(check_signatures=False)
        self._best = self._scan_best(prefer=self.tip)
        self._activate(check_signatures=False)
        if self.store.tip != self.tip.smell or self._pending_invalid:
            self.store.commit([], self._pending_invalid, self.tip.smell)
        self._pending_invalid = []

    # -- queries ---------------------------------------------------------------

    @property
    def tip(self) -> Node:
        return self.main[-1]

    @property
    def height(self) -> int:
        return len(self.main) - 1

    @property
    def work(self) -> int:
        return self.tip.work

    def __contains__(self, smell: str) -> bool:
        return smell in self.nodes

    def on_main(self, node: Node) -> bool:
        return node.height < len(self.main) and self.main[node.height] is node

    def get_cheese(self, smell: str) -> Optional[dict]:
        if smell not in self.nodes:
            return None
        return self.store.get(smell)

    def tx_height(self, tx_id: str) -> Optional[int]:
        return tx_height(self.tx_index, tx_id)

    def get_by_height(self, height: int) -> Optional[dict]:
        if 0 <= height < len(self.main):
            return self.store.get(self.main[height].smell)
        return None

    def is_best(self, smell: str) -> bool:
        node = self.nodes.get(smell)
        return node is not None and self.on_main(node)

    def ancestor(self, node: Node, height: int) -> Node:
        """The ancestor of ``node`` at ``height`` (height <= node.height)."""
        while node.height > height and not self.on_main(node):
            node = node.parent  # type: ignore[assignment]
        return self.main[height] if self.on_main(node) else node

    def next_bits(self, parent: Node) -> int:
        """The bits of a child of ``parent`` (``rules.next_bits``)."""
        return rules.next_bits(self.network, parent, self.ancestor)

    # -- adding ----------------------------------------------------------------

    def _remember_invalid(self, smell: str, rule: str) -> None:
        self.invalid[smell] = rule
        while len(self.invalid) > self.max_invalid:
            self.invalid.popitem(last=False)

    def invalid_rule(self, smell: str) -> Optional[str]:
        """The rule a cheese we found invalid broke, None if we did not."""
        known = self.nodes.get(smell)
        if known is not None:
            return known.invalid or None
        return self.invalid.get(smell)

    def add_cheese(
        self,
        cheese: Any,
        source: Source = None,
        check_signatures: bool = True,
        ihash: Optional[str] = None,
    ) -> AddResult:
        """Validate and add one cheese; raise InvalidCheese if it is invalid.

        ``ihash``: the body's info_hash, when the caller computed it (a body
        that matched its header); it is not computed again.

        An InvalidCheese raised after the stack changed carries ``.result``.
        Cheeses in the orphan pool that this one completes are added too.
        """
        ihash = rules.check_context_free(cheese, self.network, ihash) or None
        smell = cheese["smell"]
        known = self.nodes.get(smell)
        if (known is not None and not known.invalid) or smell in self.orphans:
            return AddResult("duplicate", smell)
        rule = self.invalid_rule(smell)
        if rule is not None:
            raise InvalidCheese(rule, f"cheese {smell} is known to be invalid ({rule})")
        if cheese["parent_smell"] not in self.nodes:
            if cheese["parent_smell"] in self.invalid:
                self._remember_invalid(smell, "bad-parent")
                raise InvalidCheese("bad-parent", f"the parent {cheese['parent_smell']} is invalid")
            self.orphans.add(cheese, source)
            return AddResult("orphan", smell, missing_parent=self.orphans.root_of(smell))
        old_tip = self.tip
        result = AddResult("added", smell)
        error: Optional[InvalidCheese] = None
        queue: List[Tuple[dict, bool, Optional[str]]] = [(cheese, check_signatures, ihash)]
        while queue:
            item, check_sigs, item_hash = queue.pop(0)
            try:
                self._add_known_parent(item, check_sigs, item_hash)
            except InvalidCheese as e:
                result.invalid.append((item["smell"], e))
                if item is cheese:
                    error = e
                continue
            except Exception as e:  # the store failed: what was added before it stays
                self._fill_events(result, old_tip)
                if isinstance(e, StorageError):
                    e.result = result
                raise
            result.accepted.append(item["smell"])
            for child, _source in self.orphans.pop_children(item["smell"]):
                queue.append((child, True, None))
        self._fill_events(result, old_tip)
        if error is not None:
            error.result = result
            raise error
        return result

    def _body(self, smell: str) -> dict:
        cheese = self._uncommitted.get(smell)
        return cheese if cheese is not None else stored_body(self.store, smell)

    def _add_known_parent(
        self, cheese: dict, check_signatures: bool, ihash: Optional[str] = None
    ) -> None:
        smell = cheese["smell"]
        if smell in self.nodes:
            return
        if smell in self.invalid:
            raise InvalidCheese(self.invalid[smell], f"cheese {smell} is known to be invalid")
        parent = self.nodes[cheese["parent_smell"]]
        try:
            self.check_link(cheese, parent)
            if check_signatures:
                for i, tx in enumerate(cheese["unit_of_information"]["transactions"]):
                    if not verify_signature(tx):
                        raise InvalidCheese(
                            "tx-signature", f"transaction {i}: the signature does not verify"
                        )
        except InvalidCheese as e:
            if e.permanent:
                self._remember_invalid(smell, e.rule)
            raise
        node = self._new_node(cheese, parent, ihash)
        old_tip, old_best = self.tip, self._best
        self._pending_invalid = []
        self._uncommitted = {smell: cheese}
        try:
            if node.work > self._best.work:  # type: ignore[union-attr]
                self._best = node
            self._activate(check_signatures=False)
            tip_moved = self.store.tip != self.tip.smell
            try:
                self.store.commit(
                    [(node, cheese)], self._pending_invalid, self.tip.smell if tip_moved else None
                )
            except Exception:
                # Nothing was stored (a full disk, say): what we hold in
                # memory must not be ahead of the disk, so undo it all.
                self._undo_add(node, old_tip, old_best)
                raise
        finally:
            self._uncommitted = {}
            self._pending_invalid = []
        if node.invalid:
            raise InvalidCheese(
                node.invalid, f"cheese {smell} is invalid on its stack: {self._last_error}"
            )

    def _undo_add(self, node: Node, old_tip: Node, old_best: Optional[Node]) -> None:
        """Take back a new leaf ``node`` whose commit failed: the best stack,
        ledger and indexes go back to ``old_tip`` and the invalid marks made
        on the way are forgotten (none of it reached the store)."""
        for smell, _rule in self._pending_invalid:
            marked = self.nodes.get(smell)
            if marked is not None:
                marked.invalid = None
            self.invalid.pop(smell, None)
        if self.tip is not old_tip:
            self._reorganize_to(old_tip, check_signatures=False, start_tip=old_tip)
        del self.nodes[node.smell]
        self._best = old_best

    # -- the best stack ----------------------------------------------------------

    def _scan_best(self, prefer: Optional[Node] = None) -> Node:
        """The valid node with the most work; on a tie ``prefer`` (the tip we
        had), then the first seen."""
        prefer = prefer if prefer is not None and not prefer.invalid else None
        best = prefer or self.main[0]
        for node in self.nodes.values():
            if not node.invalid and (
                node.work > best.work
                or (node.work == best.work and best is not prefer and node.order < best.order)
            ):
                best = node
        return best

    def _activate(self, check_signatures: bool) -> None:
        """Move the tip to the best candidate, marking invalid what fails on the way."""
        start_tip = self.tip
        while self._best is not None and self._best is not self.tip:
            if self._best.work < self.tip.work or (
                self._best.work == self.tip.work and self.tip is start_tip
            ):
                self._best = self.tip
                return
            self._reorganize_to(self._best, check_signatures, start_tip)

    def _reorganize_to(self, target: Node, check_signatures: bool, start_tip: Node) -> None:
        branch = []
        node: Optional[Node] = target
        while node is not None and not self.on_main(node):
            branch.append(node)
            node = node.parent
        fork = node
        assert fork is not None
        while self.tip is not fork:
            self._disconnect_tip()
        for node in reversed(branch):
            cheese = self._body(node.smell)
            try:
                self.ledger.apply_cheese(
                    cheese["unit_of_information"],
                    self.network.reward,
                    check_signatures,
                    check_format=False,
                )
            except InvalidCheese as e:
                self._last_error = e.message
                self._mark_invalid(node, e.rule)
                self._best = self._scan_best(prefer=start_tip)
                return
            self.main.append(node)
            if self.index_txs:
                index_txs(self.tx_index, node.height, cheese["unit_of_information"]["transactions"])

    def _disconnect_tip(self) -> None:
        node = self.main.pop()
        cheese = self._body(node.smell)
        self.ledger.rollback_cheese(cheese["unit_of_information"], self.network.reward)
        if self.index_txs:
            unindex_txs(self.tx_index, cheese["unit_of_information"]["transactions"])

    def _mark_invalid(self, node: Node, rule: str) -> None:
        """Mark ``node`` and every descendant invalid."""
        children: Dict[str, List[Node]] = {}
        for other in self.nodes.values():
            if other.height > node.height and other.parent is not None:
                children.setdefault(other.parent.smell, []).append(other)
        node.invalid = rule
        marks = [(node, rule)]
        todo = [node]
        while todo:
            for child in children.get(todo.pop().smell, ()):
                if not child.invalid:
                    child.invalid = "bad-parent"
                    marks.append((child, "bad-parent"))
                    todo.append(child)
        for marked, why in marks:
            self._remember_invalid(marked.smell, why)
            self._pending_invalid.append((marked.smell, why))

    def _fill_events(self, result: AddResult, old_tip: Node) -> None:
        new_tip = self.tip
        a, b = old_tip, new_tip
        down: List[Node] = []
        up: List[Node] = []
        while a is not b:
            if a.height >= b.height:
                down.append(a)
                a = a.parent  # type: ignore[assignment]
            else:
                up.append(b)
                b = b.parent  # type: ignore[assignment]
        result.disconnected = [stored_body(self.store, n.smell) for n in down]
        result.connected = [stored_body(self.store, n.smell) for n in reversed(up)]

    # -- batches -------------------------------------------------------------------

    def batch(self) -> "StoreBatch":
        """A context in which commits are atomic but flushed to disk once, at the end."""
        return StoreBatch(self.store)

    def close(self) -> None:
        self.store.close()

    # -- rules bound to this stack ---------------------------------------------------

    def check_link(self, cheese: dict, parent: Node) -> None:
        """Rules 2 to 4 of section 3 for a cheese or a header (``rules.check_link``):
        the ``LinkChecker`` a ``HeaderChain`` checks its headers against."""
        rules.check_link(cheese, parent, self.network, self.ancestor, self.clock())


class StoreBatch:
    """``CheeseStack.batch()``: the store's commits inside it are flushed once, at the end."""

    def __init__(self, store: CheeseStore) -> None:
        self.store = store

    def __enter__(self) -> None:
        self.store.batch_depth += 1

    def __exit__(
        self,
        kind: Optional[Type[BaseException]],
        error: Optional[BaseException],
        trace: Optional[TracebackType],
    ) -> None:
        self.store.batch_depth -= 1
        if self.store.batch_depth == 0:
            self.store.flush()
