"""The session check's memory: the session and user rows of sessions seen recently, kept
per process so that a signed-in request usually costs no database read.

Remembered rows are trusted only while a change watch (db/watch.py) can tell this process
about changes made anywhere else:

- ``watching`` is False until the watch is running and whenever it is not: every lookup
  misses, and the caller reads the database (which answers 503 when it is down);
- every change the watch reports evicts what it names (a user's sessions on PostgreSQL,
  everything on SQLite) and bumps ``generation``;
- a row read before a change but remembered after it would be stale: `fill` takes the
  generation seen before the read and remembers nothing when it has moved since.

Entries also age out after ``max_age`` seconds, a bound and not the mechanism. The rows
are detached ORM objects shared by every request that hits them: read them, never change
them (tests/test_session_cache.py checks the pages' and API's handlers do not).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..db.models import User, UserSession


class SessionCache:
    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: dict[str, tuple[UserSession, User, float]] = {}
        self._by_user: dict[str, set[str]] = {}
        self._max_entries = max_entries
        self._max_age = max_age
        self._clock = clock
        self.generation = 0
        self.watching = False
        #: Run before each lookup (SQLite's data_version); False means "cannot tell".
        self.poll: Callable[[], bool] | None = None
        self.hits = 0
        self.misses = 0

    def _current(self) -> bool:
        if self.poll is not None and not self.poll():
            return False
        return self.watching

    def lookup(self, session_id: str) -> tuple[UserSession, User] | None:
        entry = self._entries.get(session_id) if self._current() else None
        if entry is None or self._clock() - entry[2] > self._max_age:
            self.misses += 1
            return None
        self.hits += 1
        return entry[0], entry[1]

    def read_started(self) -> int | None:
        """Before reading the rows from the database: the token `fill` needs, or None when
        nothing read now may be remembered."""
        return self.generation if self._current() else None

    def fill(self, started: int | None, session: UserSession, user: User) -> None:
        if started is None or started != self.generation or not self.watching:
            return
        if len(self._entries) >= self._max_entries:
            self.clear_all()
        self._entries[session.id] = (session, user, self._clock())
        self._by_user.setdefault(user.id, set()).add(session.id)

    def changed_user(self, user_id: str) -> None:
        """A user's row or one of their sessions changed (or was deleted)."""
        self.generation += 1
        for session_id in self._by_user.pop(user_id, ()):
            self._entries.pop(session_id, None)

    def clear_all(self) -> None:
        self.generation += 1
        self._entries.clear()
        self._by_user.clear()

    def set_watching(self, watching: bool) -> None:
        """The watch started or stopped: either way, what was remembered may be stale."""
        self.clear_all()
        self.watching = watching

    def __len__(self) -> int:
        return len(self._entries)
