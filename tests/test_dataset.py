"""Data: layouts, class mapping, robust decoding, bad files, transforms, sharding."""
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image_folder, run_script
from src.dataset import (check_images, create_dataset, decode_image, fill_to, preprocess_image, read_image,
                         resize_size, resolve_val_split, scan_split, shard, split_dir, val_folder)
from src.errors import UserError
from src.model_utils.config import get_config


def cfg(path, *extra):
    return get_config(["--device_target", "CPU", "--dataset_path", str(path), "--image_size", "32",
                       "--work_nums", "1", *extra])


# ---------------------------------------------------------------- layouts
def test_image_folder_layout_and_class_indices(tmp_path):
    root = make_image_folder(tmp_path, classes=("zebra", "ant", "moth"), n_train=3, n_val=2)
    train = scan_split(cfg(root), "train")
    assert train.classes == ["ant", "moth", "zebra"] and len(train) == 9
    assert {Path(p).parent.name: label for p, label in train.samples} == {"ant": 0, "moth": 1, "zebra": 2}
    val = scan_split(cfg(root), "val", train.classes)
    assert len(val) == 6 and {Path(p).parent.name: label for p, label in val.samples} == {"ant": 0, "moth": 1, "zebra": 2}


def test_path_ending_in_split_is_used_as_is(tmp_path):
    root = make_image_folder(tmp_path / "imagenet")
    assert split_dir(str(root / "train"), "train") == root / "train"
    assert split_dir(str(root / "val"), "val") == root / "val"
    assert split_dir(str(root / "train"), "val") == root / "val"
    assert split_dir(str(root), "val") == root / "val"


def test_val_classes_are_numbered_as_the_training_classes(tmp_path):
    # one resolver for training, eval.py and preprocess.py: a validation set lacking a class keeps the training
    # indices (it used to be refused by training and eval.py), and a class the model does not know is refused
    root = make_image_folder(tmp_path, classes=("a", "b", "c"))
    train = scan_split(cfg(root), "train")
    for f in (root / "val" / "a").iterdir():
        f.unlink()
    (root / "val" / "a").rmdir()
    for classes in (train.classes, None):  # the trainer's classes, or found beside the validation folder
        val = scan_split(cfg(root), "val", classes)
        assert val.classes == ["a", "b", "c"]
        assert {Path(p).parent.name: label for p, label in val.samples} == {"b": 1, "c": 2}
    # classes named explicitly (a checkpoint's) win over the train folder
    val = resolve_val_split(str(root / "val"), classes=["c", "b", "a"])
    assert {Path(p).parent.name: label for p, label in val.samples} == {"b": 1, "c": 0}
    (root / "val" / "d").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "d" / "x.jpg")
    with pytest.raises(UserError, match=r"class folders of .*val are not training classes: d \(3 training classes, "
                                        r"e.g. a, b, c\): remove them from the validation folder"):
        scan_split(cfg(root), "val", train.classes)


def test_val_folder_of_a_dataset_path(tmp_path):
    root = make_image_folder(tmp_path / "imagenet")
    assert val_folder(str(root)) == root / "val"
    assert val_folder(str(root / "train")) == root / "val"  # the sibling of a given train folder
    assert val_folder(str(root / "val")) == root / "val"
    (root / "val").rename(root / "holdout")
    assert val_folder(str(root / "holdout")) == root / "holdout"  # a validation folder under any name
    assert val_folder(str(root)) == root / "val"  # a root with train/ but no val/: not its class folders
    with pytest.raises(UserError, match="dataset path not found"):
        val_folder(str(root / "none"))
    with pytest.raises(UserError, match="no dataset given: pass --dataset_path DIR"):
        val_folder("")


def test_flat_validation_layout_with_synsets_or_indices(tmp_path):
    root = make_image_folder(tmp_path, classes=("n01", "n02"), n_val=0)
    flat = root / "val"
    flat.mkdir()
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (20, 20), colour).save(flat / f"ILSVRC_val_{i:03d}.JPEG")
    labels = tmp_path / "gt.txt"
    labels.write_text("n02\nn01\nn02\n")
    c = cfg(root, "--val_layout", "flat", "--val_label_file", str(labels), "--num_classes", "2")
    val = scan_split(c, "val", ["n01", "n02"])
    assert [label for _, label in val.samples] == [1, 0, 1]
    labels.write_text("1\n0\n1\n")
    assert [label for _, label in scan_split(c, "val", ["n01", "n02"]).samples] == [1, 0, 1]
    assert [label for _, label in scan_split(c, "val", None).samples] == [1, 0, 1]
    labels.write_text("1\n0\n")
    with pytest.raises(UserError, match="has 2 labels but .* has 3 images"):
        scan_split(c, "val", ["n01", "n02"])
    labels.write_text("1\n0\nn99\n")
    with pytest.raises(UserError, match="label 'n99' for ILSVRC_val_002.JPEG"):
        scan_split(c, "val", ["n01", "n02"])


@pytest.mark.parametrize("setup,match", [
    (lambda root: None, "dataset path not found"),
    (lambda root: root.mkdir(), "dataset folder not found: .*train"),
    (lambda root: (root / "train").mkdir(parents=True), "no class folders in .*train"),
    (lambda root: (root / "train" / "a").mkdir(parents=True), "class folder .*train/a has no images"),
])
def test_missing_or_empty_dataset(tmp_path, setup, match):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(UserError, match=match):
        scan_split(cfg(root), "train")


def test_no_dataset_given():
    with pytest.raises(UserError, match="no dataset given: pass --dataset_path"):
        scan_split(get_config(["--device_target", "CPU"]), "train")


# ---------------------------------------------------------------- decoding
def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("name,make", [
    ("grayscale jpeg", lambda: _encode(Image.new("L", (30, 20), 128), "JPEG")),
    ("cmyk jpeg", lambda: _encode(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG")),
    ("rgb png", lambda: _encode(Image.new("RGB", (30, 20), (10, 200, 30)), "PNG")),
    ("16-bit png", lambda: _encode(Image.fromarray(np.full((20, 30), 65535, np.uint16)), "PNG")),
    ("palette png with transparency", lambda: _encode(Image.new("P", (30, 20), 0), "PNG", transparency=0)),
    ("rgba png", lambda: _encode(Image.new("RGBA", (30, 20), (255, 0, 0, 255)), "PNG")),
    ("1x1 image", lambda: _encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG")),
])
def test_decodes_to_rgb_uint8(name, make):
    arr = decode_image(make())
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, name


def test_decoded_colours_are_right():
    assert tuple(decode_image(_encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))[4, 4]) == pytest.approx((255, 0, 0), abs=3)
    assert tuple(decode_image(_encode(Image.fromarray(np.full((4, 4), 65535, np.uint16)), "PNG"))[0, 0]) == (255, 255, 255)
    assert tuple(decode_image(_encode(Image.new("P", (4, 4), 0), "PNG", transparency=0))[0, 0]) == (255, 255, 255)


def test_mislabeled_extension_decodes(tmp_path):
    path = tmp_path / "actually_png.JPEG"
    Image.new("RGB", (16, 16), (0, 0, 255)).save(path, "PNG")
    assert tuple(read_image(str(path))[0, 0]) == (0, 0, 255)


def test_large_jpeg_decodes_reduced_for_eval(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (12000, 12000), (200, 100, 50)).save(path, quality=50)
    arr = read_image(str(path), min_side=resize_size(224, 0.875))
    assert min(arr.shape[:2]) >= 256 and max(arr.shape[:2]) <= 3000  # draft mode: decoded at 1/8 scale
    assert preprocess_image(str(path), 224).shape == (3, 224, 224)


def _bad_files(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "text.JPEG").write_text("this is not an image\n")
    good = _encode(Image.new("RGB", (64, 64), (9, 9, 9)), "JPEG")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    return ["zero.jpg", "text.JPEG", "truncated.jpg"]


def test_bad_images_stop_before_training_naming_the_file(tmp_path):
    root = make_image_folder(tmp_path, n_train=2)
    _bad_files(root / "train" / "cat")
    train = scan_split(cfg(root), "train")
    with pytest.raises(UserError, match=r"cannot decode image .*(zero|text|truncated)\.(jpg|JPEG).*--skip_bad_images true"):
        check_images(train, skip_bad=False)


def test_bad_images_skipped_with_warning_and_count(tmp_path, caplog):
    root = make_image_folder(tmp_path, n_train=2)
    bad = _bad_files(root / "train" / "cat")
    train = scan_split(cfg(root), "train")
    with caplog.at_level(logging.WARNING):
        kept = check_images(train, skip_bad=True)
    assert len(kept) == 4 and sorted(Path(p).name for p in kept.skipped) == sorted(bad)
    for name in bad:
        assert name in caplog.text
    assert "skipped 3 undecodable image(s) of 7" in caplog.text


def test_read_image_names_bad_file(tmp_path):
    _bad_files(tmp_path)
    with pytest.raises(UserError, match=r"cannot decode image .*text\.JPEG"):
        read_image(str(tmp_path / "text.JPEG"))
    with pytest.raises(UserError, match="image not found"):
        read_image(str(tmp_path / "nope.jpg"))


# ---------------------------------------------------------------- transforms and pipelines
def test_eval_transform_is_resize_centre_crop_normalise(tmp_path):
    img = np.zeros((64, 96, 3), np.uint8)
    img[:, 48:] = 255  # right half white
    path = tmp_path / "half.png"
    Image.fromarray(img).save(path)
    out = preprocess_image(str(path), image_size=32, crop_pct=0.5)  # short side 64 -> 64, crop 32 at the centre
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    black = (0 - 0.485) / 0.229
    white = (1 - 0.485) / 0.229
    assert out[0, :, :14] == pytest.approx(black, abs=1e-3) and out[0, :, 18:] == pytest.approx(white, abs=1e-3)
    assert resize_size(224, 0.875) == 256


def test_train_and_eval_pipelines_shapes(tmp_path):
    root = make_image_folder(tmp_path, n_train=5, n_val=3)
    c = cfg(root, "--cutout_length", "8", "--auto_augment", "randaugment")
    train = scan_split(c, "train")
    batches = list(create_dataset(train, c, training=True, batch_size=4).create_tuple_iterator(num_epochs=1))
    assert len(batches) == 2 and batches[0][0].shape == (4, 3, 32, 32)  # 10 images, last partial batch dropped
    val = scan_split(c, "val", train.classes)
    batches = list(create_dataset(val, c, training=False, batch_size=4).create_tuple_iterator(num_epochs=1))
    assert [b[0].shape[0] for b in batches] == [4, 2]
    labels = np.concatenate([b[1].asnumpy() for b in batches])
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]


def cut_square(image, length):
    """(centre row, centre column) of the one zeroed square in a CHW image; asserts that it is exactly the
    ``length`` x ``length`` square around that centre clipped at the border, zero in every channel."""
    zero = (image == 0).all(axis=0)
    assert not ((image == 0).any(axis=0) & ~zero).any()  # a cut pixel is 0 in every channel
    rows, cols = np.flatnonzero(zero.any(axis=1)), np.flatnonzero(zero.any(axis=0))
    assert len(rows) > 0 and len(cols) > 0, "nothing was cut"
    # a square clipped at the top/left ends length - 1 past where it starts; length <= side, so not both
    top = rows[0] if rows[0] > 0 else rows[-1] + 1 - length
    left = cols[0] if cols[0] > 0 else cols[-1] + 1 - length
    centre = (int(top + length // 2), int(left + length // 2))
    assert 0 <= centre[0] < zero.shape[0] and 0 <= centre[1] < zero.shape[1], "centre outside the image"
    expected = np.zeros_like(zero)
    expected[max(top, 0):top + length, max(left, 0):left + length] = True
    assert (zero == expected).all(), f"not one clipped {length}x{length} square"
    return centre


def check_cutout_draws(seed, draws=1000, length=7, shape=(3, 24, 40)):
    """``draws`` cutouts of one seeded op: each one clipped square; centres over every row and column."""
    from src.dataset import Cutout

    cutout = Cutout(length, seed=seed)
    image = np.full(shape, 1.5, np.float32)
    centres = []
    for _ in range(draws):
        out = cutout(image)
        centres.append(cut_square(out, length))
        assert (out[out != 0] == 1.5).all()  # everything else untouched
    assert (image == 1.5).all()  # the input is not modified
    ys, xs = np.array(centres).T
    # 1000 uniform draws miss one of 24 (40) values with probability < 40 * (39/40)^1000 ~ 1e-9
    assert set(ys) == set(range(shape[1])) and set(xs) == set(range(shape[2]))
    half = length // 2
    assert (ys < half).any() and (ys >= shape[1] - half).any() and (xs < half).any() and (xs >= shape[2] - half).any()


def test_cutout_cuts_one_clipped_square_centred_anywhere():
    check_cutout_draws(seed=18)


def test_cutout_length_must_be_positive():
    from src.dataset import Cutout

    with pytest.raises(ValueError, match="cutout length must be >= 1, got 0"):
        Cutout(0)


def check_training_cutout(seed, draws=300):
    """The training transforms (no flip, jitter or crop change) on a constant image: every draw cuts."""
    from src.dataset import train_ops

    c = get_config(["--image_size", "32", "--cutout_length", "16", "--random_flip", "false", "--color_jitter", "0",
                    "--min_crop_scale", "1.0", "--random_seed", str(seed)])
    ops = train_ops(c)
    normalised_fill = (200 / 255 - 0.485) / 0.229
    areas = set()
    for _ in range(draws):
        img = np.full((32, 32, 3), 200, np.uint8)
        for op in ops:
            img = op(img)
        cut_square(img, 16)
        zero = (img == 0).all(axis=0)
        areas.add(int(zero.sum()))
        assert np.isclose(img[0][~zero], normalised_fill, atol=1e-3).all()
    return areas


def test_cutout_zeroes_a_square():
    areas = check_training_cutout(seed=18)
    assert min(areas) >= 8 * 8 and max(areas) == 16 * 16 and len(areas) > 2  # clipped and whole squares


def test_cutout_in_the_pipeline(tmp_path):
    root = make_image_folder(tmp_path, n_train=3, n_val=0)
    c = cfg(root, "--cutout_length", "8")
    (images, _), = create_dataset(scan_split(c, "train"), c, training=True, batch_size=6).create_tuple_iterator(
        num_epochs=1, output_numpy=True)
    for image in images:  # a normalised 8-bit pixel is never exactly 0: zeros are the cut
        cut_square(image, 8)


def test_shards_are_disjoint_equal_and_cover(tmp_path):
    root = make_image_folder(tmp_path, classes=("a", "b", "c"), n_train=5)
    train = scan_split(cfg(root), "train")  # 15 images
    parts = [shard(train, r, 3, seed=1) for r in range(3)]
    assert [len(p) for p in parts] == [5, 5, 5]
    paths = [set(p for p, _ in part.samples) for part in parts]
    assert not (paths[0] & paths[1]) and not (paths[1] & paths[2]) and len(set.union(*paths)) == 15
    two = [shard(train, r, 2, seed=1) for r in range(2)]
    assert [len(p) for p in two] == [7, 7]  # equal sizes: one image left out, never an uneven step count
    assert len(fill_to(two[0], 9)) == 9


def test_importing_the_dataset_module_leaves_pillow_settings_alone():
    """Pillow's decompression-bomb limit is lifted where this project reads images, not on import."""
    code = ("import PIL.Image as I, PIL.ImageFile as F; limit = I.MAX_IMAGE_PIXELS; F.LOAD_TRUNCATED_IMAGES = True; "
            "import src.dataset, src.trainer, src.evaluate, src.predict; "
            "assert I.MAX_IMAGE_PIXELS == limit and F.LOAD_TRUNCATED_IMAGES, (I.MAX_IMAGE_PIXELS, limit); "
            "import io, numpy as np; buf = io.BytesIO(); I.new('RGB', (8, 8)).save(buf, 'PNG'); "
            "src.dataset.decode_image(buf.getvalue()); "
            "assert I.MAX_IMAGE_PIXELS is None and not F.LOAD_TRUNCATED_IMAGES; print('ok')")
    proc = run_script(["-c", code])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
