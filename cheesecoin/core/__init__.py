"""The pure core: cheeses, transactions, the ledger, the stack, the mempool, the node.

No Twisted here.
"""
