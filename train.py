"""Train and evaluate a polarity model: `python train.py [group=option ...] [key=value ...]`.

Examples:
    python train.py                                   # synthetic data, PPNet, train + test
    python train.py model=ross optimizer=sgd lr=1e-3
    python train.py -m model=ross,ppnet seed=1,2,3    # a sweep, with a summary table
    python train.py train=false ckpt_path=outputs/train/runs/<run>/checkpoints/best.ckpt
See README.md and conf/ for every option.
"""
import os
import signal
import sys

STARTING = "interrupted (SIGINT) before the run started; nothing was written"


def _stop_while_starting(signum, frame):  # Ctrl-C while torch and Hydra import: one line, no traceback
    print(STARTING, file=sys.stderr, flush=True)
    sys.exit(130)


signal.signal(signal.SIGINT, _stop_while_starting)

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))
os.environ.setdefault("SEISPOLARITY_ROOT", ROOT)

from seispolarity.config import register_configs  # noqa: E402
from seispolarity.launch import install_startup_changes, prepare_argv  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from seispolarity.runner import run

    return run(cfg)


if __name__ == "__main__":
    sys.argv = prepare_argv(sys.argv)
    install_startup_changes()  # one composition, libyaml, cached parses, lazy plugin configs (launch.py)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the run handles its own Ctrl-C from here
    try:
        main()
    except KeyboardInterrupt:  # ... but not while Hydra composes
        print(STARTING, file=sys.stderr, flush=True)
        sys.exit(130)
