"""The web view in a real headless Chromium, driven over the DevTools protocol.

A bot (a raw gateway client here) posts a message with an embed and a button. The page must
render both; a mouse click on the button must reach the bot as INTERACTION_CREATE, and the
bot's update must show up live; text typed into the composer must reach the bot as
MESSAGE_CREATE. Keeps a screenshot.
Usage: check.py http://127.0.0.1:PORT screenshot.png
"""

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import tempfile

import aiohttp

BASE = sys.argv[1].rstrip("/")
SCREENSHOT = sys.argv[2]
TOKEN = "emulator-token"
HOME = "1100000000000000010"
OWNER = "1100000000000000101"
DEADLINE = 20
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

results = {}


def check(name, ok):
    results[name] = bool(ok)
    print(("ok   " if ok else "FAIL ") + name, flush=True)


async def until(predicate, what):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Bot:
    """Answers button clicks with an update and remembers what people wrote."""

    def __init__(self, http):
        self.http = http
        self.clicks = []
        self.messages = []

    async def run(self):
        ws = await self.http.ws_connect(BASE.replace("http", "ws", 1) + "/?v=10&encoding=json")
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": (1 << 0) | (1 << 9) | (1 << 15),
                                           "properties": {"os": "linux", "browser": "t", "device": "t"}}})
        async for frame in ws:
            event = frame.json()
            if event.get("t") == "INTERACTION_CREATE":
                interaction = event["d"]
                self.clicks.append(interaction)
                url = f"{BASE}/api/v10/interactions/{interaction['id']}/{interaction['token']}/callback"
                body = {"type": 7, "data": {"content": "Approved from the browser", "components": []}}
                async with self.http.post(url, json=body) as response:
                    assert response.status == 204, await response.text()
            elif event.get("t") == "MESSAGE_CREATE" and event["d"]["author"]["id"] == OWNER:
                self.messages.append(event["d"]["content"])


class Page:
    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def call(self, method, **params):
        self.next_id += 1
        call_id = self.next_id
        await self.ws.send_json({"id": call_id, "method": method, "params": params})
        async for frame in self.ws:
            message = frame.json()
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
        raise AssertionError("the DevTools connection closed")

    async def eval(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def click(self, selector):
        box = await self.eval(f"(() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
                              " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)


async def main():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed"
    profile = tempfile.mkdtemp(prefix="emulator-chromium-")
    browser = None
    async with aiohttp.ClientSession() as http:
        bot = Bot(http)
        bot_task = asyncio.create_task(bot.run())
        try:
            headers = {"authorization": f"Bot {TOKEN}"}
            message = {"content": "Run **`cargo test`**?", "embeds": [{
                "title": "Approval needed", "description": "The agent wants to run a command.", "color": 0xFAA61A,
                "fields": [{"name": "tool", "value": "bash", "inline": True}], "footer": {"text": "omp"}}],
                "components": [{"type": 1, "components": [
                    {"type": 2, "style": 3, "label": "Approve", "custom_id": "approve:1"},
                    {"type": 2, "style": 4, "label": "Deny", "custom_id": "deny:1"}]}]}
            async with http.post(f"{BASE}/api/v10/channels/{HOME}/messages", json=message, headers=headers) as r:
                assert r.status == 200, await r.text()

            browser = subprocess.Popen([chromium, *FLAGS, "--remote-debugging-port=0", f"--user-data-dir={profile}",
                                        "--window-size=1280,800", "about:blank"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            port_file = os.path.join(profile, "DevToolsActivePort")

            async def devtools_port():
                if os.path.exists(port_file):
                    lines = open(port_file).read().split()
                    return lines[0] if lines else None
                return None

            port = await until(devtools_port, "chromium's DevTools port")

            async def page_target():
                try:
                    async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                        targets = await r.json()
                except aiohttp.ClientError:
                    return None
                return next((t for t in targets if t["type"] == "page"), None)

            target = await until(page_target, "a page target")
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Page.navigate", url=f"{BASE}/?channel={HOME}")

                async def rendered():
                    return await page.eval("!!document.body && document.body.dataset.ready === 'true' && "
                                           "!!document.querySelector('[data-custom-id=\"approve:1\"]')")

                await until(rendered, "the message to render")
                check("embed title rendered", await page.eval(
                    "document.querySelector('.embed-title').textContent") == "Approval needed")
                check("embed field rendered", await page.eval(
                    "document.querySelector('.embed-field-name').textContent") == "tool")
                check("markdown rendered", await page.eval("!!document.querySelector('.content strong code')"))
                check("button rendered", await page.eval(
                    "document.querySelector('[data-custom-id=\"approve:1\"]').textContent") == "Approve")
                before = await page.call("Page.captureScreenshot", format="png")
                with open(SCREENSHOT.replace(".png", "-before-click.png"), "wb") as out:
                    out.write(base64.b64decode(before["data"]))

                await page.click('[data-custom-id="approve:1"]')

                async def clicked():
                    return bot.clicks

                clicks = await until(clicked, "the click to reach the bot")
                check("click reached the bot as an interaction",
                      clicks[0]["data"] == {"custom_id": "approve:1", "component_type": 2}
                      and clicks[0]["member"]["user"]["id"] == OWNER)

                async def updated():
                    return await page.eval("document.body.innerText.includes('Approved from the browser') && "
                                           "!document.querySelector('[data-custom-id=\"approve:1\"]')")

                check("the bot's update shows live", await until(updated, "the update to show"))

                await page.click("#input")
                await page.call("Input.insertText", text="typed in the browser")
                await page.click("#send")

                async def delivered():
                    return "typed in the browser" in bot.messages

                check("typed message reached the bot", await until(delivered, "the typed message"))

                async def shown():
                    return await page.eval("document.body.innerText.includes('typed in the browser')")

                await until(shown, "the typed message to show")
                shot = await page.call("Page.captureScreenshot", format="png")
                with open(SCREENSHOT, "wb") as out:
                    out.write(base64.b64decode(shot["data"]))
                check("screenshot kept", os.path.getsize(SCREENSHOT) > 1000)
        except AssertionError as error:
            check(str(error), False)
        finally:
            bot_task.cancel()
            if browser:
                browser.terminate()
                browser.wait()
            shutil.rmtree(profile, ignore_errors=True)
    passed = sum(results.values())
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


sys.exit(asyncio.run(main()))
