#!/usr/bin/python3
"""A minimal aiosmtpd server writing each message as an .eml file.

Usage: aiosmtpd_eml.py PORT DIR [--fsync]

Without --fsync it writes DIR/new/<uuid>.eml and answers 250 once the bytes
are in the page cache (no durability). With --fsync it writes DIR/tmp/<uuid>.eml,
fsyncs the file, renames it into DIR/new/, fsyncs DIR/new and only then
answers 250: a durable mail drop, one fsync pair per message.
Peer of Postoffice in bench/run.sh; not part of the product.
"""
import asyncio
import os
import sys
import uuid

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, root, durable):
        self.root = root
        self.durable = durable
        self.newdir = os.path.join(root, "new")
        self.tmpdir = os.path.join(root, "tmp")

    async def handle_DATA(self, server, session, envelope):
        name = uuid.uuid4().hex + ".eml"
        data = envelope.original_content
        if not self.durable:
            with open(os.path.join(self.newdir, name), "wb") as f:
                f.write(data)
            return "250 2.0.0 Ok"
        tmp = os.path.join(self.tmpdir, name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.newdir, name))
        dfd = os.open(self.newdir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return "250 2.0.0 Ok"


def main():
    port, root = int(sys.argv[1]), sys.argv[2]
    durable = "--fsync" in sys.argv[3:]
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    ctl = Controller(Handler(root, durable), hostname="127.0.0.1", port=port,
                     data_size_limit=64 * 1024 * 1024)
    ctl.start()
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        ctl.stop()


if __name__ == "__main__":
    main()
