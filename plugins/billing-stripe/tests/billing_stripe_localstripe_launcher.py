"""Run localstripe (GPL-3.0, a test peer only) in its own process, on 127.0.0.1.

``localstripe --port P`` binds every interface and pickles its store to the fixed path
``/tmp/localstripe.pickle``, shared by every run on the machine. This launcher starts the same
aiohttp application from a fresh store, keeps the pickle in ``--state-dir``, binds loopback on a
free port, and prints that port on its first line of output.

Usage: ``python billing_stripe_localstripe_launcher.py --state-dir DIR``
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources, server

    path = os.path.join(args.state_dir, "localstripe.pickle")

    def dump_to_disk(store: resources.Store) -> None:
        with open(path, "wb") as handle:
            pickle.dump(store, handle, protocol=pickle.HIGHEST_PROTOCOL)

    resources.Store.dump_to_disk = dump_to_disk  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = lambda store: None  # type: ignore[method-assign]

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(sock.getsockname()[1], flush=True)
    sys.stdout.flush()
    web.run_app(server.app, sock=sock, print=None, access_log=None)


if __name__ == "__main__":
    main()
