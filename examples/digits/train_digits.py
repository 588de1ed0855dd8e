"""Train the example digits CNN, export it to ONNX and write its held-out test set.

Data: scikit-learn's 8x8 hand-written digits (``sklearn.datasets.load_digits``: 1797 images,
10 classes, pixel values 0..16), which ships inside the scikit-learn package: nothing is
downloaded. Preprocessing: ``pixels / 16`` -> float32 in [0, 1], NCHW ``(N, 1, 8, 8)``.
Split: ``train_test_split(test_size=0.2, stratify=labels, random_state=SEED)``.

Model: conv3x3(1->16) ReLU, conv3x3(16->32) ReLU, maxpool 2, linear(512->10) (about 10 k
parameters); Adam, cross-entropy, seeded, one CPU thread, deterministic algorithms; a few
seconds on one core.

Writes (paths from the repository root):

* ``examples/models/digits_cnn.onnx`` + ``digits_cnn.info``: exported with
  ``host.models.zoo.export_module`` (TorchScript exporter, opset 17, static input ``input``
  1x1x8x8 float32, output ``logits`` (1, 10), checked against torch in ONNX Runtime); the
  ``.info`` adds ``dataset`` (``../datasets/digits``) and ``accuracy``: top-1/top-5 measured on
  this host with ONNX Runtime over the whole test set, batch 1.
* ``examples/datasets/digits/``: ``inputs.npy`` (float32 ``(N, 1, 8, 8)``), ``labels.npy``
  (int64 ``(N,)``), ``calibration/train.npy`` (the first 128 training images: int8 calibration
  inputs), ``meta.json`` (source, split, preprocessing, seed, package versions) — the
  layout ``python -m runners run --dataset DIR`` reads.

Run from the repository root, in a venv with torch, onnx, onnxruntime, numpy and scikit-learn::

    python examples/digits/train_digits.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # host.models.zoo (export) without installing the package

NAME = "digits_cnn"
SEED = 0
EPOCHS = 40
BATCH = 64
LR = 0.01
TEST_SIZE = 0.2
CALIBRATION = 128  # training images kept for int8 calibration
COMMAND = "python examples/digits/train_digits.py"


def load_split(seed: int) -> dict:
    """The preprocessed digits, split: ``{"x_train", "y_train", "x_test", "y_test"}``
    (x float32 ``(n, 1, 8, 8)`` in [0, 1], y int64 ``(n,)``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=seed)
    return {"x_train": np.ascontiguousarray(x_train), "y_train": y_train,
            "x_test": np.ascontiguousarray(x_test), "y_test": y_test}


def build_model(torch):
    """The CNN (random init under the current torch seed)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))


def train(torch, data: dict, seed: int, epochs: int):
    """Train on the training split; returns the model in eval mode."""
    torch.manual_seed(seed)
    model = build_model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(data["x_train"])
    y = torch.from_numpy(data["y_train"])
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def ort_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> dict:
    """Top-1/top-5 of the ONNX file in ONNX Runtime (CPU), one sample per call (the model's
    static batch of 1), ranking by logits with ties to the lower class (stable sort)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([sess.run(["logits"], {"input": x[i:i + 1]})[0] for i in range(len(x))])
    top = np.argsort(-logits, axis=1, kind="stable")
    return {"top1": float(np.mean(top[:, 0] == y)), "top5": float(np.mean((top[:, :5] == y[:, None]).any(1))),
            "n": int(len(y)), "logits": logits}


def versions() -> dict:
    import onnx
    import onnxruntime
    import sklearn
    import torch

    return {"python": platform.python_version(), "numpy": np.__version__, "torch": str(torch.__version__),
            "scikit-learn": sklearn.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def write_dataset(folder: Path, data: dict, seed: int, epochs: int) -> dict:
    """``inputs.npy``, ``labels.npy`` and ``meta.json`` of the test split; returns the meta."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "inputs.npy", data["x_test"])
    np.save(folder / "labels.npy", data["y_test"])
    (folder / "calibration").mkdir(exist_ok=True)  # int8 calibration inputs: training images only
    np.save(folder / "calibration" / "train.npy", data["x_train"][:CALIBRATION])
    meta = {
        "name": "digits",
        "source": "sklearn.datasets.load_digits (the UCI ML hand-written digits test set: 1797 8x8 images, "
                  "10 classes, pixel values 0..16), shipped inside scikit-learn; nothing downloaded",
        "split": {"method": "sklearn.model_selection.train_test_split", "test_size": TEST_SIZE,
                  "stratify": "labels", "random_state": seed, "part": "test",
                  "n_train": int(len(data["y_train"])), "n_test": int(len(data["y_test"]))},
        "preprocessing": "images / 16.0 as float32 (values in [0, 1]), reshaped to NCHW (N, 1, 8, 8)",
        "inputs": {"file": "inputs.npy", "dtype": "float32", "shape": list(data["x_test"].shape)},
        "labels": {"file": "labels.npy", "dtype": "int64", "shape": list(data["y_test"].shape),
                   "classes": 10},
        "calibration": {"file": "calibration/train.npy", "part": "train", "n": CALIBRATION,
                        "use": "int8 calibration inputs (host bench --precision int8 uses them for "
                               "models whose dataset has them); never the test images"},
        "seed": seed,
        "training": {"epochs": epochs, "batch": BATCH, "optimizer": "Adam", "lr": LR,
                     "loss": "cross-entropy", "threads": 1, "deterministic": True},
        "model": "../../models/digits_cnn.onnx",
        "versions": versions(),
        "command": COMMAND,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args(argv)
    import torch

    from host.models import zoo

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    data = load_split(args.seed)
    model = train(torch, data, args.seed, args.epochs)
    train_s = time.perf_counter() - t0
    torch_top1 = float((_torch_argmax(torch, model, data) == data["y_test"]).mean())
    write_dataset(REPO / "examples" / "datasets" / "digits", data, args.seed, args.epochs)
    onnx_path = REPO / "examples" / "models" / f"{NAME}.onnx"
    note = ("Trained weights (scikit-learn 8x8 digits, see examples/digits/train_digits.py): meaningful "
            "outputs for fidelity and accuracy studies.")
    extra = {"arch": "conv3x3(1-16) relu conv3x3(16-32) relu maxpool2 linear(512-10)",
             "dataset_shape": "digits8x8", "num_classes": 10, "weights": "trained",
             "dataset": "../datasets/digits", "note": note}
    info = zoo.export_module(model, (1, 1, 8, 8), onnx_path, name=NAME, command=COMMAND,
                             extra_info=extra, seed=args.seed)
    acc = ort_accuracy(onnx_path, data["x_test"], data["y_test"])
    logits = acc.pop("logits")
    acc.update({
        "method": f"onnxruntime {versions()['onnxruntime']} CPUExecutionProvider on this file, one sample "
                  "per call (batch 1), over every sample of ../datasets/digits (the held-out test split); "
                  "top-k by logits, ties to the lower class (stable sort)",
        "torch_top1": torch_top1,
        "argmax_agrees_with_torch": bool((logits.argmax(1) == _torch_argmax(torch, model, data)).all()),
        "versions": versions(),
    })
    info["accuracy"] = acc
    zoo.info_path(onnx_path).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(f"{NAME}: test top-1 {acc['top1']:.4f} top-5 {acc['top5']:.4f} on {acc['n']} samples "
          f"(torch {torch_top1:.4f}); trained in {train_s:.1f} s; {info['size_bytes']} bytes")
    return 0


def _torch_argmax(torch, model, data: dict) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(data["x_test"])).argmax(1).numpy()


if __name__ == "__main__":
    sys.exit(main())
