"""Stock discord.py 2.7.1 against the emulator: only the base URLs differ.

Logs in, receives READY and GUILD_CREATE, sends and edits a message, receives an injected
message, resumes after an injected drop and receives what was posted meanwhile.
Usage: check.py http://127.0.0.1:PORT
"""

import asyncio
import json
import sys
import urllib.request

import discord
import yarl

BASE = sys.argv[1].rstrip("/")
HOME = 1100000000000000010
OWNER = 1100000000000000101

discord.http.Route.BASE = BASE + "/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL("ws" + BASE[len("http"):] + "/")


def control(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + "/_emulator" + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


discord.utils.setup_logging(level=30)
intents = discord.Intents.default()
intents.message_content = True
client = discord.Client(intents=intents)
seen = {"ready": 0, "resumed": 0, "events": [], "ids": [], "sent": None}
failure = []


@client.event
async def on_ready():
    seen["ready"] += 1
    if seen["ready"] > 1:
        return
    channel = client.get_channel(HOME)
    assert channel is not None, "GUILD_CREATE did not deliver the home channel"
    message = await channel.send("hello from discord.py")
    seen["sent"] = message.id
    await message.edit(content="edited by discord.py")
    await asyncio.to_thread(control, "POST", "/messages",
                            {"channel_id": str(HOME), "user_id": str(OWNER), "content": "ping"})


@client.event
async def on_resumed():
    seen["resumed"] += 1
    # RESUMED comes after the replayed events.
    if "after the drop" in seen["events"]:
        await client.close()


@client.event
async def on_message(message):
    # The id, not only the content: discord.py edits its cached message in place when
    # MESSAGE_UPDATE arrives, which can happen before this handler runs.
    seen["ids"].append(message.id)
    seen["events"].append(message.content)
    if message.author.id == OWNER and message.content == "ping":
        await asyncio.to_thread(control, "POST", "/faults", {"gateway": {"action": "drop"}})
        # Post only once the emulator saw the connection go, so the message must be replayed.
        deadline = asyncio.get_running_loop().time() + 10
        while (await asyncio.to_thread(control, "GET", "/state"))["gateway"]["connected"] != 0:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the emulator never saw the drop")
            await asyncio.sleep(0)
        await asyncio.to_thread(control, "POST", "/messages",
                                {"channel_id": str(HOME), "user_id": str(OWNER), "content": "after the drop"})
    elif message.content == "after the drop" and seen["resumed"]:
        await client.close()


async def main():
    try:
        await asyncio.wait_for(client.start("emulator-token"), timeout=60)
    except Exception as error:  # noqa: BLE001 - report any failure as a test failure
        failure.append(repr(error))
    state = control("GET", "/state")
    stored = [m["content"] for m in state["messages"].get(str(HOME), [])]
    checks = {
        "ready once": seen["ready"] == 1,
        "own message echoed": seen["sent"] is not None and seen["sent"] in seen["ids"],
        "edit stored": "edited by discord.py" in stored,
        "injected message received": "ping" in seen["events"],
        "resumed after drop": seen["resumed"] >= 1,
        "missed message received": "after the drop" in seen["events"],
        "one identify": state["gateway"]["identify_count"] == 1,
    }
    for name, ok in checks.items():
        print(("ok   " if ok else "FAIL ") + name)
    passed = sum(checks.values())
    failed = len(checks) - passed + len(failure)
    for error in failure:
        print("FAIL " + error)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


sys.exit(asyncio.run(main()))
