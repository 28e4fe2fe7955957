#!/usr/bin/env python3
"""A real ARI client (PyPI `websockets` + `requests`) for tests/asterisk_ari.rs.

Usage: ari_client.py HOST:PORT USER PASSWORD APP
Prints every ARI event received on the app's WebSocket as one JSON line on stdout. Reads
commands from stdin, one per line:
  setvar CHANNEL_ID VARIABLE VALUE   -> POST /ari/channels/{id}/variable; prints {"rest": status, ...}
  quit
"""
import asyncio
import json
import sys

import requests
import websockets


async def main():
    hostport, user, password, app = sys.argv[1:5]
    url = f"ws://{hostport}/ari/events?app={app}&api_key={user}:{password}"
    base = f"http://{hostport}/ari"
    async with websockets.connect(url) as ws:
        print(json.dumps({"connected": True}), flush=True)
        loop = asyncio.get_running_loop()

        async def reader():
            async for msg in ws:
                print(msg.replace("\n", " "), flush=True)

        async def commands():
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line or line.strip() == "quit":
                    return
                parts = line.rstrip("\n").split(" ", 3)
                if parts[0] == "setvar" and len(parts) >= 3:
                    value = parts[3] if len(parts) > 3 else ""
                    r = await loop.run_in_executor(
                        None,
                        lambda: requests.post(
                            f"{base}/channels/{parts[1]}/variable",
                            params={"variable": parts[2], "value": value},
                            auth=(user, password),
                            timeout=30,
                        ),
                    )
                    print(json.dumps({"rest": r.status_code, "body": r.text, "variable": parts[2]}), flush=True)

        rd = asyncio.ensure_future(reader())
        await commands()
        rd.cancel()


asyncio.run(main())
