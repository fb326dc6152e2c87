"""Data side of the Ascend 310 pipeline: images -> binary inputs + labels, and result files -> top-1/top-5.

Formats shared with ``ascend310_infer/`` (and its Python stand-in ``src/infer_runner.py``):
- inputs: ``<pre_result_path>/img_data/<name>.bin``, one image as float32 C-order (3, H, W), already
  through the evaluation transform (resize short side to image_size / crop_pct, centre crop, normalise);
- labels: ``<pre_result_path>/imagenet_label.json``, ``{"<name>": class_index}``;
- outputs: ``<result_path>/<name>_0.bin``, the float32 logits of that image (output 0 of the model).
``<name>`` is the image file name without extension (prefixed with its class folder when two
classes hold files of the same name).
"""
from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

from src.dataset import ImageList, name_sample, preprocess_image, val_split
from src.errors import UserError

_LOG = logging.getLogger(__name__)

INPUT_DIR = "img_data"
LABEL_FILE = "imagenet_label.json"
RESULT_SUFFIX = "_0.bin"


def sample_names(images: ImageList) -> List[str]:
    """File names without extension; prefixed with the class folder when names repeat across classes."""
    stems = [Path(path).stem for path, _ in images.samples]
    if len(set(stems)) == len(stems):
        return stems
    named = [f"{images.classes[label]}_{Path(path).stem}" for path, label in images.samples]
    repeated = [n for n, c in Counter(named).items() if c > 1]
    if repeated:
        raise UserError(f"image names repeat inside one class of {images.root} ({name_sample(repeated)}); "
                        "rename them so every image has its own name")
    _LOG.info("image names repeat across classes: inputs are named <class>_<file name>")
    return named


def preprocess_folder(images: ImageList, output_dir: str, image_size: int = 224, crop_pct: float = 0.875) -> Path:
    """Write every image as a float32 CHW .bin plus the label JSON; stale inputs of an earlier run are removed."""
    from src.files import check_output_dir, write_error

    out = check_output_dir(output_dir, "preprocessed inputs", "--pre_result_path")
    data = out / INPUT_DIR
    if data.exists():
        _LOG.info("removing the inputs of an earlier run in %s", data)
        shutil.rmtree(data)
    data.mkdir(parents=True)
    names = sample_names(images)
    labels: Dict[str, int] = {}
    label_path = out / LABEL_FILE
    try:
        for i, (name, (path, label)) in enumerate(zip(names, images.samples), start=1):
            preprocess_image(path, image_size, crop_pct).tofile(data / f"{name}.bin")
            labels[name] = int(label)
            if i % 1000 == 0:
                _LOG.info("preprocessed %d / %d images", i, len(names))
        label_path.write_text(json.dumps(labels, indent=0, sort_keys=True) + "\n")
    except OSError as err:  # e.g. the disk filled up half way
        raise write_error(out, err, "preprocessed inputs", "--pre_result_path") from None
    _LOG.info("wrote %d inputs (3x%dx%d float32) to %s and labels to %s", len(labels), image_size, image_size,
              data, label_path)
    return out


def read_labels(label_path: str) -> Dict[str, int]:
    """The ``{name: class_index}`` map written by preprocess.py."""
    path = Path(label_path)
    if path.is_dir():
        raise UserError(f"label file {path} is a folder, not a file: preprocess.py writes {LABEL_FILE} there")
    if not path.is_file():
        raise UserError(f"label file not found: {path} (preprocess.py writes it; run the preprocessing first)")
    try:
        labels = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"label file {path} is not valid JSON: {err}") from None
    if not isinstance(labels, dict) or not labels:
        raise UserError(f"label file {path} holds no labels: expected {{\"<image name>\": class_index, ...}}")
    return {str(k): int(v) for k, v in labels.items()}


def read_results(result_path: str) -> Dict[str, np.ndarray]:
    """Logits per image name from ``<result_path>/<name>_0.bin``."""
    folder = Path(result_path)
    if not folder.is_dir():
        raise UserError(f"result folder not found: {folder} (the inference step writes result_Files there)")
    files = sorted(f for f in folder.iterdir() if f.name.endswith(RESULT_SUFFIX))
    if not files:
        raise UserError(f"result folder {folder} is empty: no <name>{RESULT_SUFFIX} files (did inference run?)")
    results = {f.name[:-len(RESULT_SUFFIX)]: np.fromfile(f, dtype=np.float32) for f in files}
    sizes = Counter(v.size for v in results.values())
    if len(sizes) > 1 or 0 in sizes:
        odd = [n for n, v in results.items() if v.size != sizes.most_common(1)[0][0]]
        raise UserError(f"result files in {folder} hold different numbers of logits ({dict(sizes)}); "
                        f"odd ones: {name_sample(odd)}")
    return results


@dataclass
class Accuracy:
    """Top-1 / top-5 accuracy over ``count`` images."""

    top1: float
    top5: float
    count: int

    def lines(self) -> List[str]:
        """The acc.log lines, exactly as the model zoo's Ascend 310 scripts print them."""
        return [f"Top1 acc:  {self.top1}", f"Top5 acc:  {self.top5}"]


def accuracy(results: Dict[str, np.ndarray], labels: Dict[str, int], where: str = "result_Files") -> Accuracy:
    """Top-1/top-5 of the logits against the labels; every labelled image must have a result and vice versa."""
    missing = sorted(set(labels) - set(results))
    extra = sorted(set(results) - set(labels))
    if missing:
        raise UserError(f"{len(missing)} labelled image(s) have no result in {where} ({name_sample(missing)}): "
                        "inference stopped early or ran on other inputs")
    if extra:
        raise UserError(f"{len(extra)} result(s) in {where} have no label ({name_sample(extra)}): the results "
                        "come from another dataset or an earlier run; clear the folder and rerun inference")
    names = sorted(labels)
    logits = np.stack([results[n] for n in names])
    targets = np.array([labels[n] for n in names])
    num_classes = logits.shape[1]
    if targets.max() >= num_classes or targets.min() < 0:
        raise UserError(f"labels go up to {targets.max()} but the results have {num_classes} logits: "
                        "the model was exported for another --num_classes")
    k = min(5, num_classes)
    # stable sort: ties go to the lower class index, as argmax does
    order = np.argsort(-logits, axis=1, kind="stable")
    top1 = int(np.sum(order[:, 0] == targets))
    top5 = int(np.sum(np.any(order[:, :k] == targets[:, None], axis=1)))
    return Accuracy(top1 / len(names), top5 / len(names), len(names))


def postprocess(result_path: str, label_path: str, acc_log: str = "") -> Accuracy:
    """postprocess.py: accuracy of ``result_path`` against ``label_path``; also written to ``acc_log``."""
    from src.files import check_output_file, write_text_atomic

    if acc_log:  # said before the work, not after it
        check_output_file(acc_log, "accuracy log", "--acc_log")
    labels = read_labels(label_path)
    acc = accuracy(read_results(result_path), labels, result_path)
    if acc_log:
        write_text_atomic(acc_log, "\n".join(acc.lines()) + "\n", "accuracy log", "--acc_log")
    return acc


def preprocess_from_config(config) -> Path:
    """preprocess.py: the validation folder of the config to ``config.pre_result_path``.

    With ``--model_path``, the model's description gives the defaults of image_size, crop_pct, num_classes and
    the training classes (``--class_list`` still names them when given).
    """
    from src.description import read_description, take_defaults
    from src.model_utils.config import Config, given_keys

    model = config.get("model_path", "")
    description = read_description(model) if model else None
    chosen = take_defaults({k: config[k] for k in ("num_classes", "image_size", "crop_pct")}, given_keys(config),
                           description, model)
    config = Config(config)  # a copy: the caller's config is left as it was
    config.update(chosen)
    described = None if config.get("class_list") else (description or {}).get("class_names")
    return preprocess_folder(val_split(config, described), config.pre_result_path, config.image_size,
                             config.crop_pct)


def label_path_of(pre_result_path: str) -> str:
    """Where preprocess.py puts the labels."""
    return str(Path(pre_result_path) / LABEL_FILE)


def input_dir_of(pre_result_path: str) -> str:
    """Where preprocess.py puts the binary inputs."""
    return str(Path(pre_result_path) / INPUT_DIR)

