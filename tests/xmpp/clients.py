"""Real XMPP clients (slixmpp) for the audit-trail tests in tests/tests/xmpp.rs.

Each run logs in the users it needs on the Prosody at 127.0.0.1:--port (domain `localhost`,
password `pw`), does one step and prints one JSON line with what happened:

  upload USER FILE
      an XEP-0363 upload (slot from the server, HTTP PUT): {"url": <get URL>}
  send FROM TO URL [--groupchat] [--recipients a,b] [--download]
      FROM sends a message whose body and jabber:x:oob URL are URL to TO (a user, or with
      --groupchat a room every recipient joined first); each online recipient waits for it,
      checks that body and OOB URL are the same, and with --download sends HEAD (as
      Conversations, Dino and Gajim do before downloading), then GET:
      {"sent_ms": ..., "received": {user: {"url", "delay_ms", "head_length", "status", "bytes"}}}
  receive USER [--download]
      USER logs in and takes the first message with a body (offline delivery), as above:
      {"received": {user: {...}}}
"""

import argparse
import asyncio
import json
import time
import urllib.request

import slixmpp

DOMAIN = "localhost"


class Client(slixmpp.ClientXMPP):
    def __init__(self, user, port):
        super().__init__(f"{user}@{DOMAIN}/test", "pw")
        self.user, self.port = user, port
        self.enable_starttls = self.enable_direct_tls = False
        self.enable_plaintext = True
        # The test server listens on loopback only, without TLS.
        self.plugin["feature_mechanisms"].unencrypted_scram = True
        self.plugin["feature_mechanisms"].unencrypted_plain = True
        for plugin in ("xep_0030", "xep_0045", "xep_0066", "xep_0363"):
            self.register_plugin(plugin)
        self.started = asyncio.get_event_loop().create_future()
        self.messages = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("groupchat_message", self.on_message)

    async def on_start(self, _):
        self.send_presence()
        await self.get_roster()
        if not self.started.done():
            self.started.set_result(True)

    def on_message(self, msg):
        if msg["body"] and msg["type"] in ("chat", "normal", "groupchat") and not msg["subject"]:
            self.messages.put_nowait((time.monotonic(), msg))

    async def login(self):
        self.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.started, 15)
        return self


def fetch(url, method):
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=15) as response:
        return response.status, response.headers.get("Content-Length"), response.read()


async def take(client, sent_at, download, expect=None):
    """The next message `client` receives (from `expect`'s bare JID, if given), downloaded."""
    while True:
        at, msg = await asyncio.wait_for(client.messages.get(), 15)
        if expect is None or msg["from"].bare == expect:
            break
    body, oob = msg["body"], msg["oob"]["url"]
    if oob and oob != body:
        raise SystemExit(f"{client.user}: the body {body!r} and the OOB URL {oob!r} differ")
    seen = {"url": body, "delay_ms": round((at - sent_at) * 1000) if sent_at else None}
    if download:
        status, length, _ = await asyncio.to_thread(fetch, body, "HEAD")
        seen["head_length"] = int(length) if length is not None else None
        status, _, data = await asyncio.to_thread(fetch, body, "GET")
        seen.update(status=status, bytes=len(data))
    return seen


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upload")
    up.add_argument("user")
    up.add_argument("file")
    send = sub.add_parser("send")
    send.add_argument("sender")
    send.add_argument("to")
    send.add_argument("url")
    send.add_argument("--groupchat", action="store_true")
    send.add_argument("--recipients", default="")
    send.add_argument("--download", action="store_true")
    receive = sub.add_parser("receive")
    receive.add_argument("user")
    receive.add_argument("--download", action="store_true")
    args = parser.parse_args()

    if args.command == "upload":
        client = await Client(args.user, args.port).login()
        url = await client.plugin["xep_0363"].upload_file(args.file, domain=DOMAIN, timeout=30)
        client.disconnect()
        print(json.dumps({"url": url}))
        return

    if args.command == "receive":
        client = await Client(args.user, args.port).login()
        seen = await take(client, None, args.download)
        client.disconnect()
        print(json.dumps({"received": {args.user: seen}}))
        return

    recipients = [r for r in args.recipients.split(",") if r]
    sender = await Client(args.sender, args.port).login()
    others = [await Client(r, args.port).login() for r in recipients]
    if args.groupchat:
        for client in [sender] + others:
            await client.plugin["xep_0045"].join_muc_wait(slixmpp.JID(args.to), client.user, maxstanzas=0, timeout=15)
    message = sender.make_message(mto=args.to, mbody=args.url, mtype="groupchat" if args.groupchat else "chat")
    message["oob"]["url"] = args.url
    sent_at = time.monotonic()
    message.send()
    # A round trip after the message: the server has taken it before the sender leaves.
    await sender.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=15)
    expect = args.to if args.groupchat else f"{args.sender}@{DOMAIN}"
    seen = {c.user: await take(c, sent_at, args.download, expect) for c in others}
    for client in [sender] + others:
        client.disconnect()
    print(json.dumps({"received": seen}))


if __name__ == "__main__":
    asyncio.run(main())
