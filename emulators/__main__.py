"""`python -m emulators --port N [--host 127.0.0.1] [--seed FILE]`: both emulated APIs on one port.

Prints exactly one line, `READY http://<host>:<port>`, once listening; SIGTERM or Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from emulators.admin import Admin
from emulators.server import Emulator, EmulatorHTTPServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=Path, help="world JSON (see emulators/README.md); empty world without it")
    args = parser.parse_args(argv)

    world = json.loads(args.seed.read_text()) if args.seed else {}
    emulator = Emulator()
    Admin(emulator).reset(world)
    server = EmulatorHTTPServer((args.host, args.port), emulator)

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it can't run on the thread that serves.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    print(f"READY http://{args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
