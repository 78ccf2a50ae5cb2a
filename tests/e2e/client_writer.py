"""A writer process for test_client_concurrency: one device of the reference
client creating, editing and deleting team objects and syncing, flat out.

    python -m tests.e2e.client_writer --url … --state-dir … --username … --token … --team …

Prints what its pushes came back with, as JSON. No Django here: it is a
device, not the server.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter

from client import RetryPolicy, SyncClient

CUSTOMER, ORDER = "fieldwork.customer", "fieldwork.workorder"
STATUSES = ["open", "scheduled", "in_progress", "done", "cancelled"]


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("--url", "--state-dir", "--username", "--token", "--team"):
        parser.add_argument(option, required=True)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - test data
    tally: Counter[str] = Counter()
    client = SyncClient(
        args.state_dir,
        base_url=args.url,
        retry=RetryPolicy(attempts=8, base_delay=0.05, max_delay=1.0),
        page_size=50,
    )
    client.use_token(args.username, args.token)
    client.register_device(name=f"writer {args.seed}")
    client.sync()
    for round_ in range(args.rounds):
        for n in range(3):
            client.create(CUSTOMER, {"name": f"w{args.seed}r{round_}c{n}", "team": args.team})
        customers = sorted(k[1] for k in client.all(CUSTOMER))
        for n in range(2):
            client.create(
                ORDER,
                {
                    "customer": rng.choice(customers),
                    "title": f"w{args.seed}r{round_}o{n}",
                    "team": args.team,
                },
            )
        orders = sorted(k[1] for k in client.all(ORDER))
        for object_id in rng.sample(orders, min(3, len(orders))):
            change = rng.choice(
                [
                    {"status": rng.choice(STATUSES)},
                    {"title": f"w{args.seed}r{round_}t"},
                    {"priority": "high"},
                ]
            )
            client.update(ORDER, object_id, change)
        if orders and rng.random() < 0.5:
            client.delete(ORDER, rng.choice(orders))
        report = client.sync()
        tally.update(report.pushed)
    client.close()
    print(json.dumps(tally))


if __name__ == "__main__":
    main()
