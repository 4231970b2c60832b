"""Run N concurrent Upwork API calls for one user in this process (configured from the
environment like the app), starting at a given wall-clock time. Exit 0 when all succeed."""

from __future__ import annotations

import asyncio
import sys
import time

from upwork_assistant.config import get_settings
from upwork_assistant.services import Services

QUERY = "query race { user { id } }"  # within the sandbox's default scopes


async def main(user_id: str, n: int, start_at: float) -> int:
    svc = Services.build(get_settings())
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = await asyncio.gather(
            *[svc.upwork.query(user_id, QUERY) for _ in range(n)],
            return_exceptions=True,
        )
    finally:
        await svc.aclose()
    failures = [repr(r) for r in results if not (isinstance(r, dict) and r.get("user"))]
    print(f"ok={n - len(failures)} failures={failures[:3]}")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))))
