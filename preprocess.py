"""Ascend 310 step 1: validation images -> float32 .bin inputs + label JSON. Options: default_config.yaml."""
import sys

from src.model_utils.cli import entry_point


@entry_point
def main(config):
    from src.infer_310 import preprocess_from_config

    print(f"preprocessed inputs in {preprocess_from_config(config)}")


if __name__ == "__main__":
    sys.exit(main())
