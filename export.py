"""Export a checkpoint to MINDIR, ONNX or AIR and verify the file against the network. Options: default_config.yaml."""
import sys

from src.model_utils.cli import entry_point


@entry_point
def main(config):
    from src.export import describe, export_from_config
    from src.model_utils.moxing_adapter import moxing_wrapper

    print(describe(moxing_wrapper(config, script="export")(export_from_config)(config)))


if __name__ == "__main__":
    sys.exit(main())
