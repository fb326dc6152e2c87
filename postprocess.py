"""Ascend 310 step 3: Top1/Top5 accuracy of result_Files against the labels, printed and in acc.log.

Options: default_config.yaml (result_path, pre_result_path, acc_log).
"""
import sys

from src.model_utils.cli import entry_point


@entry_point
def main(config):
    from src.infer_310 import label_path_of, postprocess

    acc = postprocess(config.result_path, label_path_of(config.pre_result_path), config.acc_log)
    print("\n".join(acc.lines()))


if __name__ == "__main__":
    sys.exit(main())
