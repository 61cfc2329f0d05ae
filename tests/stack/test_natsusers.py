"""NATS users on a real nats-server: each service may publish only what it owns.

A refused publish is dropped by the server and reported to the client asynchronously,
so these tests assert on what is delivered and stored, never on timing: a message that
a permitted client publishes after the refused one (on the same server, once the refused
one was flushed) arrives alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg

from common import natsconn, subjects
from common.config import Settings
from common.instruments import load_instruments
from common.journal import ensure_stream
from common.keyring import Keyring
from common.keys import SecretBox
from common.messages import PlaceOrder, Side
from ops.stack import NatsServer, natsusers
from svc_orders import snapshots
from svc_orders.journaling import Journal
from svc_orders.leadership import Lease, append_takeover, last_takeover
from svc_orders.sequencer import Sequencer
from tests.helpers import eventually

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats", users=True) as started:
        yield started


class Login:
    """A connection as one user, with the errors the server reported to it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = Nats()

    async def error(self, error: Exception) -> None:
        self.errors.append(str(error).lower())


@pytest.fixture
async def login(server: NatsServer) -> AsyncIterator[dict[str, Login]]:
    logins = {user: Login() for user in natsusers.USERS}
    for user, each in logins.items():
        settings = Settings(nats_url=server.url, nats_user=user,
                            nats_password=server.credentials[user])
        each.nc = await natsconn.connect(settings, f"test {user}", error_cb=each.error)
    await ensure_stream(logins["admin"].nc.jetstream())
    yield logins
    for each in logins.values():
        await each.nc.close()


async def delivered_only_after(admin: Nats, forge: Login, owner: Nats,
                               subject: str) -> list[bytes]:
    """What an admin subscriber to `subject` receives when `forge` publishes on it and
    then `owner` does."""
    got: list[bytes] = []

    async def received(msg: Msg) -> None:
        got.append(msg.data)

    subscription = await admin.subscribe(subject, cb=received)
    await admin.flush()
    await forge.nc.publish(subject, b"forged")
    await forge.nc.flush()  # the server has handled (and dropped) it
    await owner.publish(subject, b"real")
    await eventually(lambda: b"real" in got, timeout=10)
    await subscription.unsubscribe()
    await eventually(lambda: any("permissions violation" in e for e in forge.errors),
                     timeout=10)
    return got


async def test_without_a_password_nobody_connects(server: NatsServer) -> None:
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(server.url, allow_reconnect=False, max_reconnect_attempts=0)


async def test_svc_stream_cannot_forge_market_data(login: dict[str, Login]) -> None:
    admin, orders = login["admin"].nc, login["svc_orders"].nc
    got = await delivered_only_after(admin, login["svc_stream"], orders,
                                     subjects.trades("DEFAULT"))
    assert got == [b"real"]


@pytest.mark.parametrize("user", ["svc_stream", "svc_trades"])
async def test_only_svc_orders_writes_the_journal(login: dict[str, Login], user: str) -> None:
    admin, orders = login["admin"].nc, login["svc_orders"].nc
    got = await delivered_only_after(admin, login[user], orders, subjects.events("DEFAULT"))
    assert got == [b"real"]
    state = (await admin.jetstream().stream_info(subjects.STREAM)).state
    assert state.messages == 1  # svc_orders' alone


async def test_svc_trades_cannot_forge_market_data(login: dict[str, Login]) -> None:
    admin, orders = login["admin"].nc, login["svc_orders"].nc
    got = await delivered_only_after(admin, login["svc_trades"], orders,
                                     subjects.book("DEFAULT"))
    assert got == [b"real"]


@pytest.mark.parametrize("user", ["svc_trades", "svc_stream", "svc_orders"])
async def test_no_service_deletes_or_purges_the_journal(login: dict[str, Login],
                                                        user: str) -> None:
    admin = login["admin"].nc
    await admin.jetstream().publish(subjects.events("DEFAULT"), b"kept")
    jsm = login[user].nc.jetstream(timeout=0.5)
    with pytest.raises(nats.errors.Error):  # refused: no answer ever comes
        await jsm.purge_stream(subjects.STREAM)
    with pytest.raises(nats.errors.Error):
        await jsm.delete_stream(subjects.STREAM)
    with pytest.raises(nats.errors.Error):
        await jsm.delete_msg(subjects.STREAM, 1)
    state = (await admin.jetstream().stream_info(subjects.STREAM)).state
    assert state.messages == 1


async def test_a_service_reads_no_other_service_s_replies(login: dict[str, Login]) -> None:
    """Inboxes are per user: svc_stream cannot listen to the order queries' answers."""
    stream = login["svc_stream"]
    await stream.nc.subscribe("_INBOX.svc_orders.>")
    await stream.nc.flush()
    await eventually(lambda: any("permissions violation" in e for e in stream.errors))


async def test_the_svc_orders_user_does_all_svc_orders_does(server: NatsServer,
                                                             login: dict[str, Login]) -> None:
    """Journal, recovery, snapshots and the keys bucket, through the real sequencer."""
    orders = login["svc_orders"]
    js = orders.nc.jetstream()
    instruments = load_instruments(None)
    journal = Journal(orders.nc, 2.0)
    await journal.start()
    sequencer = Sequencer(js, journal, await snapshots.bucket(js), instruments,
                          snapshot_every=1)
    await sequencer.recover()
    for n, side in enumerate((Side.SELL, Side.BUY)):
        await sequencer.submit(PlaceOrder(
            order_id=f"00000000-0000-4000-8000-00000000000{n}", symbol="DEFAULT", side=side,
            quantity=5, price=100, user_id="123e4567-e89b-12d3-a456-426614174000"))
    await eventually(lambda: sequencer._snapshot_task is not None
                     and sequencer._snapshot_task.done())
    assert await snapshots.load(sequencer.journal.nats, sequencer.bucket) is not None
    await sequencer.recover()  # from the snapshot
    assert sequencer.engine.seq("DEFAULT") == 2
    async with Keyring(SecretBox("k" * 32)).watching(orders.nc):
        pass
    await journal.close()
    await asyncio.sleep(0)
    assert orders.errors == []


async def test_the_svc_orders_user_leads_and_follows(server: NatsServer,
                                                    login: dict[str, Login]) -> None:
    """The lease (take, renew, read, give up), the takeover message, an older journal
    raised to the takeover subject, and a standby's view of md.trades."""
    orders = login["svc_orders"]
    admin = login["admin"].nc.jetstream()
    await admin.delete_stream(subjects.STREAM)
    await admin.add_stream(name=subjects.STREAM, subjects=[subjects.EVENTS_WILDCARD])
    js = orders.nc.jetstream()
    await ensure_stream(js)
    lease = Lease(js, "http://here", 1.5, 1)
    assert await lease.acquire()
    assert await lease.renew()
    assert await lease.leader() == lease.me
    await append_takeover(js, lease.me)
    assert await last_takeover(js) == lease.me
    await lease.release()
    assert await lease.leader() is None
    await orders.nc.subscribe(subjects.TRADES_WILDCARD)
    await orders.nc.flush()
    await asyncio.sleep(0)
    assert orders.errors == []


@pytest.mark.parametrize("user", ["svc_stream", "svc_trades"])
async def test_only_svc_orders_takes_over_or_holds_the_lease(login: dict[str, Login],
                                                           user: str) -> None:
    admin, orders = login["admin"].nc, login["svc_orders"].nc
    got = await delivered_only_after(admin, login[user], orders, subjects.TAKEOVER)
    assert got == [b"real"]
    await Lease(orders.jetstream(), "http://orders", 1.5, 1).bucket()
    got = await delivered_only_after(admin, login[user], orders,
                                     f"$KV.{subjects.LEADER_BUCKET}.{subjects.LEADER_KEY}")
    assert got == [b"real"]


def test_compose_nats_config_is_the_same_table() -> None:
    """ops/compose/nats.conf is `authorization(...)` with the passwords from compose's
    environment (its header says how to write it again after a change)."""
    expected = natsusers.compose_config()
    assert (REPO / "ops" / "compose" / "nats.conf").read_text() == expected


def test_the_embedded_config_and_passwords_are_private(server: NatsServer) -> None:
    assert server.config_path.stat().st_mode & 0o077 == 0
    for user in natsusers.USERS:
        assert (server.data_dir / "users" / user).stat().st_mode & 0o077 == 0
    again = NatsServer(server.data_dir, users=True).credentials
    assert again == server.credentials  # made once per data folder


async def test_svc_trades_asks_svc_orders_for_transfers_and_nobody_else_may(
        login: dict[str, Login]) -> None:
    """Deposits and withdrawals: svc_trades asks, svc_orders answers; svc_stream cannot
    ask."""
    orders, trades, stream = login["svc_orders"], login["svc_trades"], login["svc_stream"]

    async def answer(msg: Msg) -> None:
        await msg.respond(b"done")

    await orders.nc.subscribe(subjects.TRANSFER_REQUEST, queue=subjects.TRANSFER_QUEUE,
                              cb=answer)
    await orders.nc.flush()

    async def ask() -> bytes:
        # Once in a full run the server answered "no responders" right after the flush:
        # asked again, not failed, as the point here is who may ask, not how soon.
        try:
            return (await trades.nc.request(subjects.TRANSFER_REQUEST, b"deposit",
                                            timeout=1)).data
        except nats.errors.NoRespondersError:
            raise AssertionError("no responders yet") from None

    assert await eventually(ask) == b"done"
    await stream.nc.publish(subjects.TRANSFER_REQUEST, b"forged")
    await stream.nc.flush()
    await eventually(lambda: any("permissions violation" in e for e in stream.errors))
    assert orders.errors == trades.errors == []
