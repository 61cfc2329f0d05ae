"""EX_WS_MAX_CLIENTS: the connection past the cap is refused before the upgrade."""

from prometheus_client import REGISTRY

from tests.helpers import eventually
from tests.stream.conftest import Client, MakeStream
from tests.stream.market import receive

UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


async def upgrade_status(stream: Client) -> int:
    response = await stream.get("/ws/", headers=UPGRADE)
    status = response.status
    response.close()
    return status


async def test_clients_past_the_cap_get_503_too_many_clients(make_stream: MakeStream) -> None:
    stream = await make_stream(ws_max_clients=2)
    first, second = await stream.ws_connect("/ws/"), await stream.ws_connect("/ws/")
    refused = REGISTRY.get_sample_value("stream_clients_refused_total") or 0.0

    response = await stream.get("/ws/trades/", headers=UPGRADE)
    assert response.status == 503
    body = await response.json()
    assert body["error"]["code"] == "TOO_MANY_CLIENTS"
    assert body["error"]["details"] == {"max_clients": 2}
    assert REGISTRY.get_sample_value("stream_clients_refused_total") == refused + 1

    for ws in (first, second):  # the clients inside are served as before
        await ws.send_json({"type": "ping"})
        assert await receive(ws) == {"type": "pong"}
    await first.close()
    await eventually(lambda: upgrade_status(stream), timeout=5.0)  # a place is free again
