"""A requests transport adapter that connects with TFO, on :mod:`fastopen.http.urllib3_pool`.

::

    session = requests.Session()
    adapter = FastOpenAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    response = session.get("http://198.18.0.2/")
    print(response_report(response))  # in the SYN? on a reused connection?

The rule is urllib3's: GET, HEAD and OPTIONS ride in the SYN of a new http:// connection, other
methods connect first; over https:// the ClientHello rides in the SYN. A deferred connect that
fails is ``requests.ConnectionError`` (from urllib3's ``NewConnectionError``), retried by
``max_retries`` as without TFO. Proxies go through requests' own proxy managers, without TFO.
"""

from __future__ import annotations

from typing import Any

import requests.adapters

from fastopen.http.reports import response_report
from fastopen.http.urllib3_pool import FastOpenPoolManager

__all__ = ["FastOpenAdapter", "response_report"]


class FastOpenAdapter(requests.adapters.HTTPAdapter):
    """``requests.adapters.HTTPAdapter`` whose pool manager is a :class:`FastOpenPoolManager`."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = FastOpenPoolManager(
            num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )
