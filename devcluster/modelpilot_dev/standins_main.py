"""The KServe and gateway stand-ins (instant mode) as their own process, so that they
neither share the bench's interpreter nor count towards the operator's figures:

    python -m modelpilot_dev standins KUBECONFIG

Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

from modelpilot.k8s.client import api_client
from modelpilot_dev.standins import StandIns


def main(argv: list[str]) -> int:
    (kubeconfig,) = argv
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with StandIns(api_client(kubeconfig), instant=True):
        print("stand-ins running", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
