"""Subprocess for test_storage: keeps adding cheeses (and a reorg now and then)
to a stack on disk until it is killed. Prints each committed height."""

import json
import sys

from cheesecoin.core.cheese import network_from_blue_cheese
from cheesecoin.storage.sqlite import open_stack


def main() -> None:
    data_dir, cheeses_file = sys.argv[1], sys.argv[2]
    with open(cheeses_file) as f:
        cheeses = json.load(f)
    stack = open_stack(data_dir, network_from_blue_cheese(cheeses[0]), clock=lambda: 4e9)
    for cheese in cheeses[1:]:
        stack.add_cheese(cheese)
        print(stack.height, flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
