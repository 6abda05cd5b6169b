"""`python -m engine.distributed.agent ...`: torchrun (torch.distributed.run), made to survive a hang-up.

A detached engine ignores SIGHUP (a dropped SSH connection must not stop training); torchrun's agent
would die of it. The ignored disposition is set before torchrun starts and is inherited by the ranks;
every other option is torchrun's own (engine/distributed/command.py builds them).
"""
from __future__ import annotations

import signal
import sys


def main() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from torch.distributed.run import main as torchrun_main
    sys.argv[0] = "torchrun"
    torchrun_main()


if __name__ == "__main__":
    main()
