"""Names are resolved and every address is tried, sync and asyncio: the first address a name gives
refuses the connection, and the client goes on to the next one. The client runs under
``ip netns exec``, which gives it the namespace's own /etc/hosts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from tfo import PORT, echo_server

from fastopen.lab.netns import Netns

NAME = "two.fo.test"
ORDER_CODE = f"""
import json, socket
print(json.dumps([i[4][0] for i in socket.getaddrinfo({NAME!r}, {PORT}, 0, socket.SOCK_STREAM)]))
"""
CLIENT_CODE = f"""
import asyncio, json
import fastopen

sock = fastopen.create_connection(({NAME!r}, {PORT}), 5, first_flight=b"sync")
sync = [sock.getpeername()[0], sock.recv(100).decode()]
sock.close()

async def main():
    reader, writer = await fastopen.open_connection({NAME!r}, {PORT}, first_flight=b"async")
    answer = (await asyncio.wait_for(reader.read(100), 5)).decode()
    peer = writer.get_extra_info("peername")[0]
    writer.close()
    return [peer, answer]

print(json.dumps({{"sync": sync, "async": asyncio.run(main())}}))
"""


def test_every_address_of_a_name_is_tried(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    server.ip("addr", "add", "198.18.0.4/24", "dev", "eth0")  # answers, but nothing listens
    etc = Path("/etc/netns") / client.name
    etc.mkdir(parents=True)
    try:
        (etc / "hosts").write_text(f"198.18.0.2 {NAME}\n198.18.0.4 {NAME}\n")
        order = json.loads(client.run([sys.executable, "-c", ORDER_CODE]).stdout)
        assert sorted(order) == ["198.18.0.2", "198.18.0.4"]
        refused, listening = order  # listen on the address the resolver gives second
        with echo_server(server, listening):
            result = json.loads(client.run([sys.executable, "-c", CLIENT_CODE]).stdout)
    finally:
        shutil.rmtree(etc)
    assert refused != listening
    assert result == {"sync": [listening, "ok:sync"], "async": [listening, "ok:async"]}
