"""Top-1 / top-5 accuracy and loss of a network over a dataset, and checkpoint evaluation."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from src.errors import UserError

_LOG = logging.getLogger(__name__)


class Accumulator:
    """Running top-1/top-5 counts and summed cross-entropy from batches of logits."""

    def __init__(self) -> None:
        self.count = self.top1 = self.top5 = 0
        self.loss_sum = 0.0

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        logits = logits.astype(np.float64)
        labels = labels.astype(np.int64).reshape(-1)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        self.loss_sum += float(-log_prob[np.arange(len(labels)), labels].sum())
        k = min(5, logits.shape[1])
        topk = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        self.top5 += int((topk == labels[:, None]).any(axis=1).sum())
        self.top1 += int((logits.argmax(axis=1) == labels).sum())
        self.count += len(labels)

    def result(self) -> Dict[str, float]:
        n = max(self.count, 1)
        return {"top1": self.top1 / n, "top5": self.top5 / n, "loss": self.loss_sum / n, "count": self.count}


def evaluate(net, dataset) -> Dict[str, float]:
    """Accuracy of ``net`` (put in eval mode for the pass) over a batched (image, label) dataset; in GRAPH mode
    the compiled graph is called directly (:func:`src.inference.graph_runner`)."""
    from src.inference import graph_runner

    was_training = net.training
    net.set_train(False)
    run = graph_runner(net)
    acc = Accumulator()
    try:
        for images, labels in dataset.create_tuple_iterator(num_epochs=1):
            acc.update(run(images).asnumpy(), labels.asnumpy())
    finally:
        net.set_train(was_training)
    return acc.result()


def checkpoint_files(path: str) -> List[str]:
    """A checkpoint file, or every .ckpt in a folder (sorted); a missing path is a UserError."""
    p = Path(path)
    if not str(path):
        raise UserError("no checkpoint given: pass --checkpoint_path FILE_OR_FOLDER")
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("*.ckpt") if not f.name.startswith("."))
        if not files:
            raise UserError(f"no .ckpt files in folder {p}")
        return files
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    return [str(p)]


def checkpoint_argument(config) -> str:
    """eval.py's checkpoint: ``--checkpoint_path``, or export.py's ``--checkpoint`` meaning the same."""
    path, alias = config.get("checkpoint_path", ""), config.get("checkpoint", "")
    if path and alias and Path(path) != Path(alias):
        raise UserError(f"--checkpoint_path {path} and --checkpoint {alias} disagree: pass one of them")
    return path or alias


def format_result(name: str, r: Dict[str, float]) -> str:
    return (f"{name}: top-1 {100 * r['top1']:.2f}% top-5 {100 * r['top5']:.2f}% loss {r['loss']:.4f} "
            f"({r['count']} images)")


def write_json_atomic(path: str, data, flag: str = "--eval_output") -> None:
    """Write JSON under a temporary name and rename it into place.

    A folder at ``path`` or a place that cannot be written is a UserError naming ``flag``.
    """
    from src.files import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n", "evaluation results", flag)


def _output_path(config, files: List[str]) -> str:
    if config.eval_output:
        return config.eval_output
    if len(files) == 1:
        return str(Path(files[0]).with_suffix(".eval.json"))
    return str(Path(checkpoint_argument(config)) / "eval_results.json")


def _first_description(files: List[str]) -> Tuple[Optional[dict], str]:
    """The description of the first checkpoint that can be read (a bad one in a folder is reported later)."""
    from src.description import read_description

    for path in files:
        try:
            return read_description(path), path
        except UserError:
            continue
    return None, files[0]


def run_eval(config) -> int:
    """eval.py: evaluate one checkpoint or every checkpoint of a folder on the validation split."""
    from src.dataset import bad_image_message, check_images, create_dataset, val_split
    from src.description import DEFAULTED, take_defaults
    from src.inference import load_network
    from src.model_utils.config import Config, given_keys
    from src.model_utils.device import init_context

    files = checkpoint_files(checkpoint_argument(config))
    out = _output_path(config, files)
    if Path(out).is_dir():  # known now: say so before the evaluation, not after it
        raise UserError(f"--eval_output {out} is a folder: give a file path for the evaluation results")
    description, source = _first_description(files)
    chosen = take_defaults({k: config[k] for k in DEFAULTED}, given_keys(config), description, source)
    config = Config(config)  # a copy: the caller's config is left as it was
    config.update(chosen)
    # the model's own training classes label the images, unless --class_list names them
    described = None if config.get("class_list") else (description or {}).get("class_names")
    images = val_split(config, described)
    if config.check_images:
        images = check_images(images, config.skip_bad_images)
    if len(images.classes) != config.num_classes:
        raise UserError(f"the validation set has {len(images.classes)} classes but --num_classes is "
                        f"{config.num_classes}: pass --num_classes {len(images.classes)}")
    config.run_distribute = False
    init_context(config)
    dataset = create_dataset(images, config, training=False, batch_size=config.val_batch_size)
    results, failed = {}, {}
    for path in files:
        try:
            # the fastest exact form (tests/test_fuse.py, tests/test_native_depthwise.py): BN folded per
            # checkpoint, and on CPU the native depthwise kernel
            net, _ = load_network(path, config.arch, config.num_classes, True, config.depthwise_kernel,
                                  config.device_target)
        except UserError as err:
            if len(files) == 1:
                raise
            # one bad file in a folder: report it, keep the results of the others
            _LOG.error("skipped: %s", err)
            failed[path] = str(err)
            continue
        start = time.time()
        try:
            results[path] = evaluate(net, dataset)
        except RuntimeError as err:  # an image the check did not catch: one line naming it, not a pipeline dump
            message = bad_image_message(err)
            if message is None:
                raise
            raise UserError(f"{message}, while reading the validation data: fix or remove it, or pass "
                            "--skip_bad_images true to skip undecodable images") from None
        results[path]["seconds"] = round(time.time() - start, 2)
        if len(files) > 1:
            _LOG.info(format_result(path, results[path]))
    if not results:
        raise UserError(f"none of the {len(files)} checkpoints in {checkpoint_argument(config)} could be evaluated; "
                        f"first: {next(iter(failed.values()))}")
    best = max(results, key=lambda k: results[k]["top1"])
    summary = {"dataset": images.root, "arch": config.arch, "image_size": config.image_size,
               "crop_pct": config.crop_pct, "results": results, "best": best}
    if failed:
        summary["failed"] = failed
    prefix = "best " if len(files) > 1 else ""
    # said before the result line, which stays the last line of a successful run
    _LOG.info("results go to %s%s", out, " (replacing the earlier file)" if Path(out).exists() else "")
    # the accuracy first: a result that cannot be written is still seen
    print(prefix + format_result(best, results[best]), flush=True)
    write_json_atomic(out, summary)
    if failed:
        raise UserError(f"{len(failed)} of {len(files)} checkpoints could not be evaluated "
                        f"({', '.join(Path(f).name for f in failed)}; reasons above and in {out}); "
                        f"the other {len(results)} are in {out}")
    return 0
