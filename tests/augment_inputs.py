"""One small labelled shapes dataset in every input format `jaxgen augment` reads."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxgen.shapes.render import render
from jaxgen.shapes.scene import Scene, ShapeObject

LABELS = ("circle", "square")
PER_CLASS = 2


def shape_image(shape: str, i: int, side: int = 64) -> np.ndarray:
    scene = Scene("white", (ShapeObject(shape, ("red", "blue", "green")[i % 3], "large",
                                        ("center", "top left", "bottom")[i % 3]),))
    image = render(scene)
    return np.asarray(Image.fromarray(image).resize((side, side))) if side != 64 else image


def _png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


def images(side: int = 64) -> list[tuple[str, str, bytes]]:
    """(key, label, png bytes) of every image, sorted by key."""
    return [(f"{label}_{i}", label, _png(shape_image(label, i, side)))
            for label in LABELS for i in range(PER_CLASS)]


def write(root: Path, fmt: str, side: int = 64) -> str:
    """The dataset written in `fmt` under `root`; returns what --input takes."""
    root.mkdir(parents=True, exist_ok=True)
    items = images(side)
    if fmt == "folders":
        for key, label, data in items:
            (root / label).mkdir(exist_ok=True)
            (root / label / f"{key.split('_')[1]}.png").write_bytes(data)
        return str(root)
    if fmt == "metadata":
        lines = []
        for key, label, data in items:
            (root / f"{key}.png").write_bytes(data)
            lines.append(json.dumps({"file_name": f"{key}.png", "label": label}))
        (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
        return str(root)
    if fmt == "webdataset":
        with tarfile.open(root / "train-0.tar", "w") as tar:
            for key, label, data in items:
                for name, body in ((f"{key}.png", data),
                                   (f"{key}.cls", str(LABELS.index(label)).encode()),
                                   (f"{key}.label", label.encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
        return str(root / "*.tar")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        features = {"image": {"_type": "Image"},
                    "label": {"names": list(LABELS), "_type": "ClassLabel"},
                    "key": {"dtype": "string", "_type": "Value"}}
        table = pa.table({
            "image": [{"bytes": data, "path": f"{key}.png"} for key, _, data in items],
            "label": [LABELS.index(label) for _, label, _ in items],
            "key": [key for key, _, _ in items],
        }).replace_schema_metadata(
            {b"huggingface": json.dumps({"info": {"features": features}}).encode()})
        pq.write_table(table, root / "train.parquet")
        return str(root / "train.parquet")
    raise ValueError(fmt)
