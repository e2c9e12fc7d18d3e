"""One worker process of a multi-process test or bench: fetches queries of one token.

    python tests/budget_worker.py BASE_URL PACING QUERY [QUERY ...]

The token comes from IBKR_FLEX_TOKEN. Prints one JSON line: the statements fetched, and the
errors (class names) of those that failed. Exits 0 either way.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from ibkr_flex_client import FlexClient, FlexError


async def fetch_all(base_url: str, pacing: str, queries: list[str]) -> dict[str, object]:
    token = os.environ["IBKR_FLEX_TOKEN"]
    clients = [
        FlexClient(token=token, query_id=q, base_url=base_url, pacing=pacing, timeout=5.0)
        for q in queries
    ]
    results = await asyncio.gather(*(c.fetch() for c in clients), return_exceptions=True)
    errors = [type(r).__name__ for r in results if isinstance(r, FlexError)]
    return {"fetched": len(results) - len(errors), "errors": errors}


def main() -> None:
    base_url, pacing, *queries = sys.argv[1:]
    print(json.dumps(asyncio.run(fetch_all(base_url, pacing, queries))), flush=True)


if __name__ == "__main__":
    main()
