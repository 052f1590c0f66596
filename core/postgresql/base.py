"""Django's PostgreSQL backend, with one change to its psycopg pool's checkout check.

psycopg's pool tests each connection it hands out (CONN_HEALTH_CHECKS) and, when one fails, tries
the next idle one after a growing pause (0, 1, 2, 4, 8 s: psycopg/psycopg#711). When PostgreSQL
restarts or its backends are terminated, every idle connection is dead at once, so the first
checkout walks through them all with those pauses between them: with eight dead connections it
gives up after the pool timeout and the request or task fails, minutes after the database is back.

Here a failed check also checks the pool's other idle connections there and then (the cleanup
psycopg's maintainers recommend, `ConnectionPool.check()`): the dead ones are discarded and
replaced together, and the checkout's next try gets a live connection without pausing.
"""

from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def _check_and_sweep(pools: dict[str, ConnectionPool], alias: str) -> Callable[[Any], None]:
    def check(connection: Any) -> None:
        try:
            ConnectionPool.check_connection(connection)
        except Exception:
            pools[alias].check()  # the other idle connections; this one the pool discards itself
            raise

    return check


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        """As Django's (`django.db.backends.postgresql.base`), with the sweeping check."""
        options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not options:
            return None
        if self.alias not in self._connection_pools:
            pool = ConnectionPool(
                kwargs={**self.get_connection_params(), "autocommit": True},
                open=False,  # opened on first use, as Django does
                configure=self._configure_connection,
                check=_check_and_sweep(self._connection_pools, self.alias)
                if self.settings_dict["CONN_HEALTH_CHECKS"]
                else None,
                **({} if options is True else options),
            )
            # Two threads may build one at once; the first stored wins, as in Django.
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
