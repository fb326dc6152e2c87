"""Train ProxylessNAS on ImageNet (or any ImageFolder dataset). Options: see default_config.yaml."""
import sys

from src.model_utils.cli import entry_point


@entry_point
def main(config):
    from src.signals import route_sigint_to_python
    route_sigint_to_python()  # before MindSpore loads: see src/signals.py
    from src.model_utils.moxing_adapter import moxing_wrapper
    from src.trainer import train
    return moxing_wrapper(config, script="train")(train)(config)


if __name__ == "__main__":
    sys.exit(main())
