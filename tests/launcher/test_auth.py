"""./ops/run with auth: protected mode refuses an exposed address without it, and with
it the first start creates an admin key and prints it, once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.common.auth import SECRET_KEY
from tests.helpers import eventually
from tests.signing import signing_session
from tests.system import REPO, Launcher, run_launcher

pytestmark = pytest.mark.integration

AUTH = {"EX_AUTH": "on", "EX_SECRET_KEY": SECRET_KEY}


async def exit_of(*command: str, env: dict[str, str]) -> tuple[int | None, str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("EX_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, cwd=REPO, env=environ | env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode, out.decode()


@pytest.mark.parametrize("module", ["svc_orders", "svc_trades", "ops.launcher"])
async def test_an_exposed_address_without_auth_refuses_to_start(module: str) -> None:
    status, out = await exit_of("-m", module, env={"EX_HOST": "0.0.0.0"})
    assert status != 0
    assert "EX_AUTH" in out
    status, out = await exit_of("-m", module, env={"EX_HOST": "0.0.0.0", "EX_AUTH": "on"})
    assert (status != 0, "EX_SECRET_KEY" in out) == (True, True)


def printed_key(launcher: Launcher) -> dict[str, Any] | None:
    for line in launcher.lines:
        if '"secret"' in line:
            return dict(json.loads(line.split("| ", 1)[1]))
    return None


async def test_the_first_start_with_auth_prints_an_admin_key_once(tmp_path: Path) -> None:
    async for running in run_launcher(tmp_path, AUTH):
        await eventually(partial(running.said, "all services ready"), timeout=40)
        key = printed_key(running)
        assert key is not None, running.output()
        assert key["role"] == "admin"
        base = f"http://127.0.0.1:{running.ports['EX_ORDERS_PORT']}"
        async with signing_session(key["key_id"], key["secret"], base) as session, \
                session.get("/orders/") as response:
            assert response.status == 200
        async with aiohttp.ClientSession() as anonymous, \
                anonymous.get(base + "/orders/") as response:
            assert response.status == 401
        running.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(running.proc.wait(), 30) == 0
    async for running in run_launcher(tmp_path, AUTH):
        await eventually(partial(running.said, "all services ready"), timeout=40)
        assert printed_key(running) is None
