"""ImageNet-style data: folder scanning, robust decoding, train/eval transforms, MindSpore pipelines.

Layouts:
- ImageFolder: ``ROOT/train/<class>/<image>``, ``ROOT/val/<class>/<image>`` (a path that already
  ends in ``train``/``val`` is used as is). Class indices are the sorted training class folders.
- Flat validation (ImageNet's own): ``ROOT/val/<image>`` plus a label file with one class index or
  synset per line, for the images in sorted file-name order.
"""
from __future__ import annotations

import io
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFile

from src.errors import UserError

_LOG = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")


def _pillow_for_datasets() -> None:
    """Pillow as image reading here needs it; set where images are read (importing this module changes nothing).

    The decompression-bomb guard is off: ImageNet has legitimate large images, and decoding is bounded by
    draft mode. Truncated files must fail, whatever another library set.
    """
    Image.MAX_IMAGE_PIXELS = None
    ImageFile.LOAD_TRUNCATED_IMAGES = False


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------
def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image (grayscale, CMYK, 16-bit, palette with transparency, RGBA) as 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray(np.clip(np.asarray(img), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        # transparent pixels over white, as a viewer shows them
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img.convert("RGBA"), mask=img.convert("RGBA").split()[-1])
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def decode_image(data: bytes, min_side: int = 0) -> np.ndarray:
    """Decode image bytes (whatever the file extension says) to an RGB uint8 HWC array.

    ``min_side`` > 0 lets JPEG decoding shrink by a power of two while the short side stays
    >= min_side (much faster for large photos; used by evaluation, which resizes anyway).
    """
    _pillow_for_datasets()
    with Image.open(io.BytesIO(data)) as img:
        if min_side and img.format == "JPEG":
            w, h = img.size
            scale = min(w, h) / float(min_side)
            if scale >= 2:
                img.draft("RGB", (int(np.ceil(w / scale)), int(np.ceil(h / scale))))
        img.load()
        return np.asarray(to_rgb(img), dtype=np.uint8)


def shown(path: str) -> str:
    """A path as printable text: bytes that are not UTF-8 (kept by os as surrogates) shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_image(path: str, min_side: int = 0) -> np.ndarray:
    """Read and decode one image file to RGB uint8 HWC; a bad file is a UserError naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if not data:
            raise ValueError("empty file (0 bytes)")
        return decode_image(data, min_side)
    except FileNotFoundError:
        raise UserError(f"image not found: {shown(path)}") from None
    except Exception as err:  # PIL raises many types for bad data
        raise UserError(f"cannot decode image {shown(path)}: {err}") from None


# ---------------------------------------------------------------------------
# Transforms
# ---------------------------------------------------------------------------
def resize_size(image_size: int, crop_pct: float) -> int:
    """Short side before the centre crop: 256 for 224 at crop_pct 0.875."""
    return int(round(image_size / crop_pct))


def eval_ops(image_size: int = 224, crop_pct: float = 0.875) -> list:
    """Evaluation transforms on an RGB uint8 HWC image -> float32 CHW, normalised."""
    import mindspore.dataset.vision as vision

    return [
        vision.Resize(resize_size(image_size, crop_pct)),
        vision.CenterCrop(image_size),
        vision.Normalize([m * 255 for m in IMAGENET_MEAN], [s * 255 for s in IMAGENET_STD]),
        vision.HWC2CHW(),
    ]


def preprocess_image(path: str, image_size: int = 224, crop_pct: float = 0.875) -> np.ndarray:
    """One image file through the evaluation transforms: float32 (3, image_size, image_size)."""
    image = read_image(path, min_side=resize_size(image_size, crop_pct))
    for op in eval_ops(image_size, crop_pct):
        image = op(image)
    return np.ascontiguousarray(image, dtype=np.float32)


class Cutout:
    """Cutout (DeVries & Taylor, 2017) on a normalised CHW image: one ``length`` x ``length`` square set to 0.

    The square's centre is a pixel drawn uniformly over the whole image and the square is clipped at the
    border, so every image loses between (length // 2)^2 and length^2 pixels, and corners are cut as
    often as the middle. 0 after normalisation is the dataset's mean colour. MindSpore's
    ``vision.CutOut`` is not used: it draws the top-left corner from [-length, size], and the two end
    values put the square entirely outside the image (about 8% of 32x32 images at length 16 kept
    everything).
    """

    def __init__(self, length: int, seed: Optional[int] = None):
        if length < 1:
            raise ValueError(f"cutout length must be >= 1, got {length}")
        self.length = length
        # numpy's Generator serialises its draws, so the pipeline's worker threads may share it
        self._rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        _, height, width = image.shape
        top = int(self._rng.integers(height)) - self.length // 2
        left = int(self._rng.integers(width)) - self.length // 2
        out = np.array(image, copy=True)  # the pipeline may hand over a read-only buffer
        out[:, max(top, 0):top + self.length, max(left, 0):left + self.length] = 0
        return out


def train_ops(config) -> list:
    """Training transforms from the config: random-resized crop, flip, colour jitter, [auto-augment], cutout."""
    import mindspore.dataset.vision as vision

    ops = [vision.RandomResizedCrop(config.image_size, scale=(config.min_crop_scale, 1.0))]
    if config.random_flip:
        ops.append(vision.RandomHorizontalFlip())
    if config.auto_augment == "randaugment":
        ops.append(vision.RandAugment())
    elif config.auto_augment == "autoaugment":
        ops.append(vision.AutoAugment())
    if config.color_jitter > 0:
        j = config.color_jitter
        ops.append(vision.RandomColorAdjust(brightness=(max(0.0, 1 - j), 1 + j), contrast=(max(0.0, 1 - j), 1 + j),
                                            saturation=(max(0.0, 1 - j), 1 + j)))
    ops.append(vision.Normalize([m * 255 for m in IMAGENET_MEAN], [s * 255 for s in IMAGENET_STD]))
    ops.append(vision.HWC2CHW())
    if config.cutout:
        # seeded by the run's seed, like the pipeline's own random ops (the trainer seeds those with it)
        ops.append(Cutout(min(config.cutout_length, config.image_size), seed=config.random_seed))
    return ops


# ---------------------------------------------------------------------------
# Folder scanning
# ---------------------------------------------------------------------------
@dataclass
class ImageList:
    """Samples (path, label) of one split, with the class names the labels index."""

    samples: List[Tuple[str, int]]
    classes: List[str]
    root: str = ""
    skipped: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def split_dir(dataset_path: str, sub: str) -> Path:
    """``dataset_path/sub``, or dataset_path itself when it already is that split."""
    if not dataset_path:
        raise UserError("no dataset given: pass --dataset_path DIR (with train/ and val/ inside)")
    root = Path(dataset_path).expanduser()
    if not root.exists():
        raise UserError(f"dataset path not found: {root}")
    if root.name == sub:
        return root
    if root.name in ("train", "val") and not (root / sub).exists():
        return root.parent / sub  # given .../train, the val split is its sibling
    return root / sub


def find_classes(folder: Path) -> List[str]:
    """Sorted class sub-folders of an ImageFolder split."""
    if not folder.is_dir():
        raise UserError(f"dataset folder not found: {folder}")
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"no class folders in {folder}: expected {folder}/<class>/<image> (ImageFolder layout)")
    return classes


def scan_image_folder(folder: Path) -> ImageList:
    """List an ImageFolder split; labels index its own sorted class folders."""
    found = find_classes(folder)
    index = {c: i for i, c in enumerate(found)}
    samples = []
    for c in found:
        images = _class_images(folder / c)
        if not images:
            raise UserError(f"class folder {shown(str(folder / c))} has no images (looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}): add images or remove the folder")
        samples += [(path, index[c]) for path in images]
    if not samples:
        raise UserError(f"no images in {folder} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return ImageList(samples, list(found), str(folder))


def _class_images(class_dir: Path) -> List[str]:
    """Image files under one class folder; links to folders are followed only inside it, and once.

    A link back to the folder itself (or a loop) would list its images again, and a link to the parent
    or to another class would give that class's images this label: both are skipped with a warning.
    """
    top = os.path.realpath(class_dir)
    seen = set()
    images: List[str] = []

    def inside(real: str) -> bool:
        return real == top or real.startswith(top.rstrip(os.sep) + os.sep)

    def walk(directory: str) -> None:
        real = os.path.realpath(directory)
        if real in seen:
            _LOG.warning("skipping %s: a link to a folder already listed (a symlink loop?)", shown(directory))
            return
        seen.add(real)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as err:
            raise UserError(f"cannot list {shown(directory)} ({err.strerror})") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                if entry.is_symlink() and not inside(os.path.realpath(entry.path)):
                    _LOG.warning("skipping %s: a link to a folder outside its class folder %s", shown(entry.path),
                                 shown(str(class_dir)))
                    continue
                walk(entry.path)
            elif _is_image(entry.name):
                images.append(entry.path)

    walk(str(class_dir))
    return images


def scan_flat(folder: Path, label_file: str, classes: Sequence[str]) -> ImageList:
    """ImageNet's flat validation layout: images in one folder, labels (index or synset) in a file."""
    if not folder.is_dir():
        raise UserError(f"validation folder not found: {folder}")
    if not label_file or not Path(label_file).is_file():
        raise UserError(f"val_layout flat needs --val_label_file with one label per image; not found: {label_file!r}")
    files = sorted(f for f in os.listdir(folder) if _is_image(f))
    labels = [line.strip() for line in Path(label_file).read_text().splitlines() if line.strip()]
    if len(labels) != len(files):
        raise UserError(f"{label_file} has {len(labels)} labels but {folder} has {len(files)} images")
    index = {c: i for i, c in enumerate(classes)}
    samples = []
    for name, label in zip(files, labels):
        if label in index:
            target = index[label]
        elif label.isdigit() and int(label) < len(classes):
            target = int(label)
        else:
            raise UserError(f"{label_file}: label {label!r} for {name} is neither a training class nor an index "
                            f"below {len(classes)}")
        samples.append((str(folder / name), target))
    return ImageList(samples, list(classes), str(folder))


# ---------------------------------------------------------------------------
# The validation split: one resolver for training, eval.py and preprocess.py
# ---------------------------------------------------------------------------
IMAGENET_CLASSES = Path(__file__).resolve().parent / "imagenet_classes.txt"


def name_sample(names: Sequence[str], n: int = 3) -> str:
    """A few of ``names`` (sorted) for a message: ``a, b, c and 7 more``."""
    names = sorted(names)
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def imagenet_synsets() -> List[str]:
    """The 1000 ImageNet synsets (n01440764, ...) in class-index order."""
    return [line.split("\t", 1)[0] for line in IMAGENET_CLASSES.read_text().splitlines() if line.strip()]


def read_class_list(path: str) -> List[str]:
    """Class names in class-index order, one per line (a tab and a description may follow the name)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"class list not found: {file} (one training class per line, in class-index order)")
    names = [line.split("\t", 1)[0].strip() for line in file.read_text().splitlines() if line.strip()]
    if not names or len(set(names)) != len(names):
        raise UserError(f"class list {file} is empty or names a class twice")
    return names


def val_folder(dataset_path: str, val_dir: str = "val", train_dir: str = "train") -> Path:
    """The validation folder of ``--dataset_path``: a dataset root's ``val_dir``, the sibling of a given train
    folder, or the given folder itself (a validation folder under any name)."""
    if not dataset_path:
        raise UserError("no dataset given: pass --dataset_path DIR (the validation folder, or a folder with "
                        f"{val_dir}/ inside)")
    root = Path(dataset_path).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset path not found: {root}")
    if root.name == val_dir:
        return root
    if (root / val_dir).exists():
        return root / val_dir
    if root.name in (train_dir, "train", "val"):
        return root.parent / val_dir  # given .../train, the val split is its sibling
    if (root / train_dir).is_dir():
        return root / val_dir  # a dataset root without a validation split
    return root


def training_classes(folder: Path, train_dir: str = "train", class_list: str = "", num_classes: int = 1000,
                     names: Optional[Sequence[str]] = None) -> Optional[List[str]]:
    """The classes a model was trained on, in index order: ``class_list``, else the class folders of the training
    split beside the validation ``folder``, else the ImageNet synsets for 1000 classes (when they name all the
    validation class folders ``names``); None when none of them is at hand."""
    if class_list:
        return read_class_list(class_list)
    train = folder.parent / train_dir
    if train.is_dir():
        return find_classes(train)
    synsets = imagenet_synsets() if num_classes == 1000 else None
    if synsets is not None and names is not None and not set(names) <= set(synsets):
        return None  # the ImageNet synsets only name ImageNet's folders
    return synsets  # ImageNet labels given as synsets work without the train folder


def relabel(images: ImageList, classes: Sequence[str]) -> ImageList:
    """Renumber an image list by ``classes`` (the training classes); a class not among them is an error."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = [c for c in images.classes if c not in index]
    if unknown:
        raise UserError(f"class folders of {images.root} are not training classes: {name_sample(unknown)} "
                        f"({len(classes)} training classes, e.g. {name_sample(classes)}): remove them from the "
                        "validation folder, or name the classes the model was trained on (--class_list FILE, or its "
                        "train folder beside the validation folder)")
    if len(images.classes) < len(classes):
        _LOG.info("%s holds %d of the %d training classes; labels are training-class indices", images.root,
                  len(images.classes), len(classes))
    samples = [(path, index[images.classes[label]]) for path, label in images.samples]
    return ImageList(samples, list(classes), images.root)


def _numbered_by_folders(found: ImageList, num_classes: int) -> ImageList:
    """Nothing names the training classes: the validation folders do, when they can be trusted to."""
    fix = "put the train folder beside it or pass --class_list FILE (one training class per line)"
    if len(found.classes) == num_classes:
        _LOG.info("classes numbered from the %d validation folders (as many as --num_classes)", num_classes)
    elif num_classes == 1000:  # the default: nothing says how many classes the model has
        _LOG.warning("classes numbered from the %d validation folders of %s: right only if the model was "
                     "trained on exactly these; %s", len(found.classes), found.root, fix)
    else:
        raise UserError(f"{found.root} has {len(found.classes)} class folders but --num_classes is {num_classes}, "
                        f"and nothing names the training classes: {fix}")
    return found


def resolve_val_split(dataset_path: str, layout: str = "imagefolder", label_file: str = "", val_dir: str = "val",
                      num_classes: int = 1000, train_dir: str = "train", class_list: str = "",
                      classes: Optional[Sequence[str]] = None) -> ImageList:
    """The validation images of ``dataset_path`` (see :func:`val_folder`), labelled by the training classes.

    The training classes are ``classes`` when given (the trainer's, or those a checkpoint names), else
    :func:`training_classes`; a validation set holding only some of them is labelled as the model numbers them.
    Layouts: class folders (``imagefolder``), or ``flat`` images with ``label_file`` (an index or class name per
    image, in sorted file-name order).
    """
    folder = val_folder(dataset_path, val_dir, train_dir)
    if layout == "flat":
        if classes is None:
            classes = training_classes(folder, train_dir, class_list, num_classes)
        # without training classes to name them, labels must be indices below num_classes
        return scan_flat(folder, label_file, classes or [str(i) for i in range(num_classes)])
    found = scan_image_folder(folder)
    if classes is None:
        classes = training_classes(folder, train_dir, class_list, num_classes, found.classes)
    return relabel(found, classes) if classes is not None else _numbered_by_folders(found, num_classes)


def val_split(config, classes: Optional[Sequence[str]] = None) -> ImageList:
    """:func:`resolve_val_split` with the options of a config (training, eval.py and preprocess.py)."""
    return resolve_val_split(config.dataset_path, config.val_layout, config.val_label_file, config.val_dir,
                             config.num_classes, config.train_dir, config.get("class_list", ""), classes)


def _image_problem(path: str) -> Optional[str]:
    """None if the file decodes as an image, else the reason it does not."""
    try:
        if os.path.getsize(path) == 0:
            return "empty file"
        _pillow_for_datasets()
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.draft("RGB", (64, 64))
            img.load()  # decode all the data: a cut-off file passes verify() and, for RGB, to_rgb() too
            to_rgb(img)
        return None
    except Exception as err:  # PIL raises many types for bad data
        return f"{type(err).__name__}: {err}"


def check_images(images: ImageList, skip_bad: bool, workers: int = 1) -> ImageList:
    """Decode-check every image before training: stop naming the first bad one, or skip them all with a warning."""
    paths = [p for p, _ in images.samples]
    if workers > 1 and len(paths) > 256:
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            problems = list(pool.imap(_image_problem, paths, chunksize=64))
    else:
        problems = [_image_problem(p) for p in paths]
    good, bad = [], []
    for (path, label), problem in zip(images.samples, problems):
        if problem is None:
            good.append((path, label))
            continue
        if not skip_bad:
            raise UserError(f"cannot decode image {shown(path)} ({problem}): fix or remove it, or pass "
                            "--skip_bad_images true to skip undecodable images")
        _LOG.warning("skipping undecodable image %s (%s)", shown(path), problem)
        bad.append(path)
    if bad:
        _LOG.warning("skipped %d undecodable image(s) of %d in %s", len(bad), len(paths), images.root)
    if not good:
        raise UserError(f"no decodable images in {images.root}")
    return ImageList(good, images.classes, images.root, bad)


def scan_split(config, split: str, classes: Optional[Sequence[str]] = None) -> ImageList:
    """The training or validation image list of a config (validation: :func:`val_split`)."""
    if split != "train":
        return val_split(config, classes)
    images = scan_image_folder(split_dir(config.dataset_path, config.train_dir))
    if len(images.classes) < 2:
        raise UserError(f"{images.root} has a single class folder ({images.classes[0]}): a classifier needs "
                        "at least two classes (one would train to loss 0 and 100% accuracy on nothing)")
    return images


def scan_training_set(config) -> ImageList:
    """The training image list of a config, whose class count must be ``--num_classes``."""
    images = scan_split(config, "train")
    if len(images.classes) != config.num_classes:
        raise UserError(f"the training set has {len(images.classes)} classes but --num_classes is "
                        f"{config.num_classes}: pass --num_classes {len(images.classes)}")
    return images


def shard(images: ImageList, rank: int, group_size: int, seed: int) -> ImageList:
    """This rank's part of the training set: a fixed random permutation dealt out round-robin.

    Every rank gets exactly ``len // group_size`` samples, so all ranks run the same number
    of steps (a rank with fewer batches would leave the others waiting in the all-reduce).
    """
    if group_size <= 1:
        return images
    per_rank = len(images.samples) // group_size
    if per_rank == 0:
        raise UserError(f"{len(images.samples)} training images cannot be shared by {group_size} workers")
    order = np.random.default_rng(seed).permutation(len(images.samples))
    mine = order[rank::group_size][:per_rank]
    return ImageList([images.samples[i] for i in sorted(mine)], images.classes, images.root)


def fill_to(images: ImageList, size: int) -> ImageList:
    """Repeat samples (in order) until there are ``size``: keeps shard sizes equal after skipping bad images."""
    samples = list(images.samples)
    i = 0
    while len(samples) < size:
        samples.append(images.samples[i % len(images.samples)])
        i += 1
    return ImageList(samples, images.classes, images.root, images.skipped)


# ---------------------------------------------------------------------------
# MindSpore pipelines
# ---------------------------------------------------------------------------
BAD_IMAGE_MARK = "@@bad-image@@"


def bad_image_message(err: BaseException) -> Optional[str]:
    """The one-line 'cannot decode image ...' inside a pipeline error, or None if it is about something else."""
    text = str(err)
    start = text.find(BAD_IMAGE_MARK)
    end = text.find(BAD_IMAGE_MARK, start + len(BAD_IMAGE_MARK))
    if start < 0 or end < 0:
        return None
    return text[start + len(BAD_IMAGE_MARK):end].strip()


class _ImageSource:
    """Random-access source for GeneratorDataset: decoded RGB image and label."""

    def __init__(self, samples: List[Tuple[str, int]], min_side: int = 0, skip_bad: bool = False):
        self.samples = samples
        self.min_side = min_side
        self.skip_bad = skip_bad
        self.skipped = 0  # per data worker process

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        for offset in range(len(self.samples)):
            path, label = self.samples[(index + offset) % len(self.samples)]
            try:
                return read_image(path, self.min_side), np.array(label, dtype=np.int32)
            except UserError as err:
                if not self.skip_bad:
                    # the pipeline buries this under a stack dump: the trainer fishes it out by this marker
                    raise UserError(f"{BAD_IMAGE_MARK}{err}{BAD_IMAGE_MARK}") from None
                self.skipped += 1
                _LOG.warning("%s: using the next image instead (%d skipped by this data worker)", err, self.skipped)
        raise UserError(f"no decodable image among the {len(self.samples)} of this split")


def create_dataset(images: ImageList, config, training: bool, batch_size: int, rank: int = 0,
                   group_size: int = 1, shuffle: Optional[bool] = None, drop_remainder: Optional[bool] = None):
    """A batched MindSpore dataset of (image float32 NCHW, label int32) for one split.

    Training shards by rank (each rank sees its own 1/group_size of the data) and drops the
    last incomplete batch; evaluation keeps every image.
    """
    import mindspore.dataset as ds

    workers = max(1, min(config.work_nums, os.cpu_count() or 1))
    shuffle = training if shuffle is None else shuffle
    # JPEGs may be decoded at 1/2, 1/4 or 1/8 scale as long as even the smallest random crop (or the eval
    # resize) still has image_size pixels: a 12000x12000 photo then costs as much as a 1500x1500 one
    min_side = (int(math.ceil(config.image_size / math.sqrt(config.min_crop_scale))) if training
                else resize_size(config.image_size, config.crop_pct))
    source = _ImageSource(images.samples, min_side, bool(getattr(config, "skip_bad_images", False)))
    dataset = ds.GeneratorDataset(source, column_names=["image", "label"],
                                  shuffle=shuffle, num_shards=group_size if group_size > 1 else None,
                                  shard_id=rank if group_size > 1 else None, num_parallel_workers=workers,
                                  python_multiprocessing=workers > 1)
    ops = train_ops(config) if training else eval_ops(config.image_size, config.crop_pct)
    dataset = dataset.map(operations=ops, input_columns="image", num_parallel_workers=workers)
    return dataset.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
