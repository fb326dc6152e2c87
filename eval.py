"""Evaluate checkpoints on the validation split: top-1, top-5, loss. Options: see default_config.yaml."""
import sys

from src.model_utils.cli import entry_point


@entry_point
def main(config):
    from src.evaluate import run_eval
    from src.model_utils.moxing_adapter import moxing_wrapper
    return moxing_wrapper(config, script="eval")(run_eval)(config)


if __name__ == "__main__":
    sys.exit(main())
