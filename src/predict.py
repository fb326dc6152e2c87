"""Classify image files with a checkpoint, MINDIR or ONNX model, using the evaluation transform.

    python predict.py photo.jpg more_photos/ --model proxylessnas_mobile.mindir [--json]

Class names: the model's description (the training class folders, stored by train.py and export.py, see
``src/description.py``), the ImageNet names shipped in ``src/imagenet_classes.txt`` (1000 classes), the class
folders of a custom ImageFolder dataset (``--class_names_from DIR``), or a names file (``--class_names``,
one name per line in class-index order, optionally ``id<TAB>name``); the last two take precedence.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from src.errors import UserError
from src.native_depthwise import CHOICES as DEPTHWISE_CHOICES

_LOG = logging.getLogger(__name__)

IMAGENET_CLASSES = Path(__file__).resolve().parent / "imagenet_classes.txt"
MODEL_KINDS = {".ckpt": "checkpoint", ".mindir": "MINDIR", ".onnx": "ONNX"}
MODES = ("auto", "GRAPH", "PYNATIVE")
# A checkpoint in GRAPH mode costs one graph compile (about 2-3 s on a 2-core CPU) and then runs each
# image about 1.4x faster than PyNative (18-20 ms against 27-28 ms at batch 1, issue 17; the benchmark's
# "first call s" column and its GRAPH and PyNative rows measure both): from this many images on, GRAPH
# is the faster way through the whole run.
GRAPH_MIN_IMAGES = 100
DEFAULT_CROP_PCT = 0.875


@dataclass
class ClassName:
    """One class: its display name and, where known, an identifier (ImageNet synset, folder name)."""

    name: str
    ident: str = ""


@dataclass
class Model:
    """A loaded classifier: float32 NCHW batch of one -> logits (1, num_classes)."""

    run: Callable[[np.ndarray], np.ndarray]
    kind: str
    image_size: int
    num_classes: Optional[int]
    description: Optional[dict] = None  # what the file says it is (src/description.py); None: nothing


def list_images(inputs: Sequence[str]) -> List[Path]:
    """Image files named directly or found (recursively, sorted) in the folders given."""
    from src.dataset import IMAGE_EXTENSIONS

    found: List[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            inside = sorted(Path(d) / f for d, _, files in os.walk(path, followlinks=True) for f in files
                            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
            if not inside:
                raise UserError(f"no image files in folder {path}")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise UserError(f"image or folder not found: {path}")
    if not found:
        raise UserError("no images given: pass image files or folders")
    return found


def read_names_file(path: str) -> List[ClassName]:
    """Class names from a file: one per line in class-index order, ``id<TAB>name`` or just ``name``."""
    file = Path(path)
    if file.is_dir():
        raise UserError(f"--class_names {file} is a folder, not a file (for class folders use --class_names_from)")
    if not file.is_file():
        raise UserError(f"class names file not found: {file}")
    names = []
    for line in file.read_text().splitlines():
        if not line.strip():
            continue
        ident, tab, name = line.partition("\t")
        names.append(ClassName(name.strip(), ident.strip()) if tab else ClassName(line.strip()))
    if not names:
        raise UserError(f"class names file {file} is empty")
    return names


def class_names(num_classes: int, names_file: str = "", names_from: str = "",
                described: Optional[Sequence[str]] = None) -> List[ClassName]:
    """Names for the model's classes: folder names, a names file, the model's description (its training class
    folders), ImageNet's for 1000 classes, else indices."""
    if names_from:
        from src.dataset import find_classes

        folder = Path(names_from).expanduser()
        if (folder / "train").is_dir():
            folder = folder / "train"  # a dataset root: classes come from its training folders
        names = [ClassName(c, c) for c in find_classes(folder)]
        source = f"class folders of {folder}"
    elif names_file:
        names, source = read_names_file(names_file), f"names file {names_file}"
    elif described:
        names, source = [ClassName(c, c) for c in described], "the model's description"
    elif num_classes == 1000:
        names, source = read_names_file(str(IMAGENET_CLASSES)), "ImageNet"
    else:
        return [ClassName(f"class {i}") for i in range(num_classes)]
    if len(names) != num_classes:
        raise UserError(f"{source} gives {len(names)} classes but the model has {num_classes}: "
                        "pass the names of the dataset the model was trained on")
    return names


def checkpoint_mode(image_count: int, requested: str = "auto") -> str:
    """MindSpore execution mode for running a checkpoint over ``image_count`` images ("GRAPH" or "PYNATIVE").

    ``auto`` picks the faster for the whole run: GRAPH (compiled once, faster per image) from
    :data:`GRAPH_MIN_IMAGES` images on, PyNative (no compile) for fewer.  Both compute the same logits.
    """
    if requested not in MODES:
        raise UserError(f"--mode {requested!r} is not one of {', '.join(MODES)}")
    if requested != "auto":
        return requested
    return "GRAPH" if image_count >= GRAPH_MIN_IMAGES else "PYNATIVE"


def open_model(path: str, arch: Optional[str] = None, num_classes: Optional[int] = None,
               image_size: Optional[int] = None, fold_bn: bool = True, depthwise_kernel: str = "auto",
               mode: str = "GRAPH") -> Model:
    """Load a .ckpt (into ``arch``, BN folded into the convs unless ``fold_bn`` is False), .mindir or .onnx file.

    ``arch``/``num_classes`` None: the checkpoint's description, else proxylessnas_mobile and the classifier's size
    (see :func:`src.inference.load_network`).
    ``image_size`` None: a MINDIR's or ONNX file's own input size (224 for a .ckpt); given, it must match the file.

    A .ckpt runs with the native CPU depthwise kernel unless ``depthwise_kernel`` is "builtin"
    (see :mod:`src.native_depthwise`), in MindSpore's ``mode`` (see :func:`checkpoint_mode`).
    """
    file = Path(path).expanduser()
    if file.is_dir():
        raise UserError(f"--model {file} is a folder, not a file: pass a .ckpt, .mindir or .onnx file inside it")
    kind = MODEL_KINDS.get(file.suffix.lower())
    if kind is None:
        raise UserError(f"--model {file}: unknown model type {file.suffix!r}; use a .ckpt, .mindir or .onnx file")
    if not file.is_file():
        raise UserError(f"model not found: {file}")
    if kind != "checkpoint":
        from src.description import read_description
        from src.files import check_image_size
        from src.inference import open_exported

        exported = open_exported(file)
        image_size = check_image_size(file, exported.image_size, image_size, "--image_size")
        return Model(exported.run, kind, image_size, exported.num_classes, read_description(file))

    import mindspore as ms

    from src.inference import graph_runner, load_network
    from src.model_utils.device import set_device

    set_device("CPU")
    if mode not in MODES[1:]:
        raise UserError(f"mode {mode!r} is not one of GRAPH, PYNATIVE")
    ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE)
    net, description = load_network(str(file), arch, num_classes, fold_bn, depthwise_kernel, "CPU")
    run = graph_runner(net)
    return Model(lambda x: run(ms.Tensor(x)).asnumpy(), kind, image_size or 224, net.output.weight.shape[0],
                 description)


def top_k(logits: np.ndarray, k: int) -> List[Tuple[int, float]]:
    """The k best (class index, softmax probability) of one logits vector, best first."""
    logits = np.asarray(logits, dtype=np.float64).ravel()
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-logits, kind="stable")[:k]
    return [(int(i), float(probs[i])) for i in order]


def predict(images: Sequence[Path], model: Model, names_file: str = "", names_from: str = "", topk: int = 5,
            crop_pct: Optional[float] = None) -> List[dict]:
    """Top-k predictions of every image: ``[{"image", "top": [{"rank", "index", "name", "id", "probability"}]}]``."""
    from src.dataset import preprocess_image

    names: Optional[List[ClassName]] = None
    if crop_pct is None:
        crop_pct = (model.description or {}).get("crop_pct", DEFAULT_CROP_PCT)
    results = []
    for path in images:
        x = preprocess_image(str(path), model.image_size, crop_pct)[None]
        try:
            logits = model.run(x)
        except Exception as err:
            raise UserError(f"the {model.kind} model cannot run a 1x3x{model.image_size}x{model.image_size} input "
                            f"(exported for another --image_size?): {str(err).strip().splitlines()[0]}") from None
        logits = np.asarray(logits).reshape(-1)
        if names is None:
            names = class_names(logits.size, names_file, names_from, (model.description or {}).get("class_names"))
        top = [{"rank": r, "index": i, "name": names[i].name, "id": names[i].ident, "probability": round(p, 6)}
               for r, (i, p) in enumerate(top_k(logits, topk), start=1)]
        results.append({"image": str(path), "top": top})
    return results


def format_text(results: Sequence[dict]) -> str:
    """Human-readable top-k lists, one block per image."""
    lines = []
    for result in results:
        lines.append(result["image"])
        for entry in result["top"]:
            ident = f" [{entry['id']}]" if entry["id"] and entry["id"] != entry["name"] else ""
            index = f"  (class {entry['index']})" if entry["name"] != f"class {entry['index']}" else ""
            lines.append(f"  {entry['rank']}. {entry['probability']:7.2%}  {entry['name']}{ident}{index}")
    return "\n".join(lines)


def _described_options(args: argparse.Namespace) -> dict:
    """--arch, --num_classes, --image_size, --crop_pct: as given, else from the model's description (else None)."""
    from src.description import DEFAULTED, read_description, take_defaults

    values = {key: getattr(args, key) for key in DEFAULTED}
    given = [key for key, value in values.items() if value is not None]
    model = Path(args.model).expanduser()
    # a missing or odd file: open_model says what is wrong with it
    description = read_description(model) if model.is_file() and model.suffix.lower() in MODEL_KINDS else None
    return take_defaults(values, given, description, args.model)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """predict.py command line; a user mistake is one line and exit 2."""
    from src.model_utils.device import configure_environment

    parser = argparse.ArgumentParser(prog="predict.py", description="Classify images with a ProxylessNAS "
                                     "checkpoint (.ckpt), MINDIR or ONNX model; prints the top classes.")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--model", required=True, help=".ckpt, .mindir or .onnx file")
    parser.add_argument("--arch", default=None, help="network of a .ckpt (default: the checkpoint's description, "
                        "else proxylessnas_mobile)")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classes of a .ckpt (default: read from the checkpoint; must match its weights)")
    parser.add_argument("--image_size", type=int, default=None,
                        help="input side (default: the model's description, else a MINDIR's or ONNX file's own "
                             "size, 224 for a .ckpt; must match an exported file's)")
    parser.add_argument("--crop_pct", type=float, default=None,
                        help=f"centre-crop fraction (default: the model's description, else {DEFAULT_CROP_PCT})")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--class_names", default="", help="names file: one class per line, optionally id<TAB>name")
    names.add_argument("--class_names_from", default="", help="ImageFolder dataset whose class folders name the classes")
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--mode", default="auto", choices=MODES,
                        help="MindSpore mode for a .ckpt (default %(default)s: GRAPH from "
                             f"{GRAPH_MIN_IMAGES} images on, where its compile pays off; PYNATIVE for fewer)")
    parser.add_argument("--depthwise_kernel", default="auto", choices=DEPTHWISE_CHOICES,
                        help="a .ckpt's depthwise convs: this project's native CPU kernel or MindSpore's Conv2D "
                             "(default %(default)s: native when it builds)")
    args = parser.parse_args(argv)
    # logs go to stderr so that stdout holds only the result (JSON stays parseable)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr, force=True)
    configure_environment("CPU")
    try:
        if args.topk < 1:
            raise UserError(f"--topk must be >= 1, got {args.topk}")
        if args.image_size is not None and (args.image_size < 32 or args.image_size % 32):
            raise UserError(f"--image_size must be a multiple of 32 and at least 32, got {args.image_size}")
        if args.crop_pct is not None and not 0 < args.crop_pct <= 1:
            raise UserError(f"--crop_pct must be in (0, 1], got {args.crop_pct}")
        images = list_images(args.inputs)
        chosen = _described_options(args)
        model = open_model(args.model, chosen["arch"], chosen["num_classes"], chosen["image_size"],
                           depthwise_kernel=args.depthwise_kernel, mode=checkpoint_mode(len(images), args.mode))
        results = predict(images, model, args.class_names, args.class_names_from, args.topk, chosen["crop_pct"])
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2) if args.json else format_text(results))
    return 0
