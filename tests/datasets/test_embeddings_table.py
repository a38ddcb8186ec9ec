"""``embeddings``: CSV / TSV / Parquet / NPY / NPZ tables and every bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from graphforge.builtin.datasets.embeddings import Embeddings
from graphforge.errors import ConfigError, DataError


def frame(
    n_per_class: int = 10, classes=("husky", "tabby", "tiger", "zebra"), dim: int = 3, seed: int = 0
):
    """A table whose feature ``f0`` encodes the class index (to trace rows)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, name in enumerate(classes):
        for j in range(n_per_class):
            feats = rng.normal(size=dim)
            feats[0] = i
            rows.append(
                {**{f"f{k}": feats[k] for k in range(dim)}, "label": name, "id": f"{name}-{j}"}
            )
    return pd.DataFrame(rows)


def load(path, seed=0, **options):
    return Embeddings(**options).load(root=path, download=False, seed=seed)


def assert_rows_keep_labels(data):
    for split in (data.train, data.val, data.test):
        assert torch.equal(split.x[:, 0].long(), split.y)


def test_csv_with_string_labels(tmp_path, caplog):
    path = tmp_path / "emb.csv"
    frame().to_csv(path, index=False)
    data = load(path)
    assert data.kind == "vectors" and data.name == "embeddings"
    assert data.class_names == ["husky", "tabby", "tiger", "zebra"]
    assert data.sizes() == {"train": 32, "val": 4, "test": 4}
    assert data.train.x.dtype == torch.float32 and data.train.x.shape[1] == 3
    assert torch.bincount(data.test.y).tolist() == [1, 1, 1, 1]
    assert_rows_keep_labels(data)
    assert "ignoring non-numeric columns ['id']" in caplog.text


def test_split_is_seeded(tmp_path):
    path = tmp_path / "emb.csv"
    frame().to_csv(path, index=False)
    assert torch.equal(load(path, seed=5).test.x, load(path, seed=5).test.x)
    assert not torch.equal(load(path, seed=5).test.x, load(path, seed=6).test.x)


def test_tsv_and_parquet(tmp_path):
    table = frame()
    table.to_csv(tmp_path / "emb.tsv", sep="\t", index=False)
    table.to_parquet(tmp_path / "emb.parquet")
    a, b = load(tmp_path / "emb.tsv"), load(tmp_path / "emb.parquet")
    assert torch.allclose(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)


def test_non_contiguous_integer_labels_are_remapped(tmp_path):
    table = frame().assign(label=lambda f: f["f0"].astype(int) * 10 + 3)
    table.to_csv(tmp_path / "emb.csv", index=False)
    data = load(tmp_path / "emb.csv")
    assert data.class_names == ["3", "13", "23", "33"]
    assert_rows_keep_labels(data)


def test_label_column_and_feature_columns_options(tmp_path):
    table = frame().rename(columns={"label": "kind"})
    table.to_csv(tmp_path / "emb.csv", index=False)
    data = load(tmp_path / "emb.csv", label_column="kind", feature_columns="f0, f2")
    assert data.train.x.shape[1] == 2
    assert_rows_keep_labels(data)
    data = load(tmp_path / "emb.csv", label_column="kind", feature_columns=["f0", 1])
    assert data.train.x.shape[1] == 2


def test_split_column(tmp_path):
    table = frame()
    table["split"] = ["train"] * 30 + ["VAL"] * 4 + ["test"] * 6
    table.to_csv(tmp_path / "emb.csv", index=False)
    data = load(tmp_path / "emb.csv")
    assert data.sizes() == {"train": 30, "val": 4, "test": 6}
    assert data.test.x[:, 0].tolist() == [3.0] * 6  # the last rows are class 3


def test_named_split_column_without_val_rows_carves_val(tmp_path):
    table = frame(n_per_class=20)
    table["part"] = ["train" if i % 5 else "test" for i in range(len(table))]
    table.to_csv(tmp_path / "emb.csv", index=False)
    data = load(tmp_path / "emb.csv", split_column="part")
    assert data.sizes() == {"train": 60, "val": 4, "test": 16}  # floor(16 * 0.1) per class


def test_npy_label_is_last_column_by_default(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    array = np.column_stack([labels, rng.normal(size=(30, 2)), labels * 2.0])
    np.save(tmp_path / "emb.npy", array)
    data = load(tmp_path / "emb.npy")
    assert data.train.x.shape[1] == 3
    assert data.class_names == ["0", "2", "4"]
    assert_rows_keep_labels(data)
    by_index = load(tmp_path / "emb.npy", label_column=0)
    assert by_index.class_names == ["0", "1", "2"]
    assert by_index.train.x.shape[1] == 3


@pytest.mark.parametrize("keys", [("x", "y"), ("embeddings", "labels")])
def test_npz(tmp_path, keys):
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    y = np.array(["b", "a", "c"] * 10)
    x[:, 0] = np.searchsorted(["a", "b", "c"], y)
    np.savez(tmp_path / "emb.npz", **{keys[0]: x, keys[1]: y})
    data = load(tmp_path / "emb.npz")
    assert data.class_names == ["a", "b", "c"] and data.train.x.shape[1] == 4
    assert_rows_keep_labels(data)


def test_npz_with_split(tmp_path):
    x = np.zeros((30, 2))
    y = np.arange(30) % 3
    x[:, 0] = y
    split = np.array(["train"] * 20 + ["val"] * 5 + ["test"] * 5)
    np.savez(tmp_path / "emb.npz", x=x, y=y, split=split)
    assert load(tmp_path / "emb.npz").sizes() == {"train": 20, "val": 5, "test": 5}


# --- bad input -----------------------------------------------------------------------


def test_nan_features(tmp_path):
    table = frame()
    table.loc[[7, 12], "f1"] = np.nan
    table.loc[20, "f2"] = np.inf
    table.to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match=r"3 rows have NaN or infinite features \(first: row 7"):
        load(tmp_path / "emb.csv")


def test_missing_label_column_lists_columns(tmp_path):
    frame().drop(columns="label").to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(
        DataError, match=r"no label column 'label'; available columns: f0, f1, f2, id"
    ):
        load(tmp_path / "emb.csv")


def test_missing_labels(tmp_path):
    table = frame()
    table.loc[5, "label"] = None
    table.to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match=r"1 rows have no label in column 'label' \(first: row 5"):
        load(tmp_path / "emb.csv")


def test_fractional_numeric_labels(tmp_path):
    table = frame().assign(label=lambda f: f["f1"])
    table.to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="non-integer value"):
        load(tmp_path / "emb.csv")


def test_non_numeric_feature_columns_are_named(tmp_path):
    frame().to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="feature columns id are not numeric"):
        load(tmp_path / "emb.csv", feature_columns=["f0", "id"])


def test_no_numeric_features(tmp_path):
    frame()[["id", "label"]].to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(
        DataError, match=r"no numeric feature columns besides the label \(non-numeric: id\)"
    ):
        load(tmp_path / "emb.csv")


def test_unknown_feature_column(tmp_path):
    frame().to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="no feature column 'f9'"):
        load(tmp_path / "emb.csv", feature_columns="f0,f9")


def test_label_used_as_feature(tmp_path):
    frame().assign(label=lambda f: f["f0"].astype(int)).to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="include the label/split column"):
        load(tmp_path / "emb.csv", feature_columns="f0,label")


def test_single_class(tmp_path):
    frame(classes=("only",)).to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="1 distinct value.*at least 2 classes"):
        load(tmp_path / "emb.csv")


def test_class_too_small_to_stratify(tmp_path):
    table = frame()
    table = table[~((table["label"] == "tiger") & (table.index % 10 > 3))]  # 4 tigers
    table.to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(
        DataError, match="class 'tiger' has only 4 samples.*80/10/10 % split.*at least 10"
    ):
        load(tmp_path / "emb.csv")


def test_bad_split_values(tmp_path):
    table = frame()
    table["split"] = ["train"] * 30 + ["holdout"] * 10
    table.to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match=r"split column 'split' has values \['holdout'\]"):
        load(tmp_path / "emb.csv")


def test_split_without_test_rows(tmp_path):
    table = frame()
    table["split"] = ["train"] * 35 + ["val"] * 5
    table.to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="no rows have split=test"):
        load(tmp_path / "emb.csv")


def test_missing_split_column(tmp_path):
    frame().to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(DataError, match="no split column 'fold'"):
        load(tmp_path / "emb.csv", split_column="fold")


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("emb.csv", b"", "cannot read .*emb.csv"),
        ("emb.csv", b"a,label\n", "has no rows"),
        ("emb.parquet", b"PAR1 but not really", "cannot read .*emb.parquet"),
        ("emb.npy", b"\x93NUMPY garbage", "cannot read .*emb.npy"),
        ("emb.npz", b"PK not a zip", "cannot read .*emb.npz"),
        ("emb.xlsx", b"", "cannot tell the format"),
    ],
)
def test_unreadable_files(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=match):
        load(tmp_path / name)


def test_ragged_csv_is_a_one_line_error(tmp_path):
    (tmp_path / "emb.csv").write_text("a,b,label\n1,2,0\n3,4,5,6\n1,1,1\n")
    with pytest.raises(DataError) as info:
        load(tmp_path / "emb.csv")
    message = str(info.value)
    assert "\n" not in message and message.endswith("Expected 3 fields in line 3, saw 4)"), message


def test_npy_must_be_2d(tmp_path):
    np.save(tmp_path / "emb.npy", np.zeros(10))
    with pytest.raises(DataError, match="1-D array .*expected 2-D"):
        load(tmp_path / "emb.npy")


def test_npz_without_known_arrays(tmp_path):
    np.savez(tmp_path / "emb.npz", features=np.zeros((3, 2)))
    with pytest.raises(
        DataError, match=r"must hold arrays 'x'/'y' or 'embeddings'/'labels'; found \['features'\]"
    ):
        load(tmp_path / "emb.npz")


def test_npz_label_length(tmp_path):
    np.savez(tmp_path / "emb.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match="one label per row"):
        load(tmp_path / "emb.npz")


def test_root_must_be_a_file(tmp_path):
    with pytest.raises(DataError, match="--data-root FILE"):
        load(None)
    with pytest.raises(DataError, match="is a directory; pass the table file itself"):
        load(tmp_path)
    with pytest.raises(DataError, match="is missing"):
        load(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"label_column": 1.5}, "label_column"),
        ({"label_column": True}, "label_column"),
        ({"feature_columns": ""}, "feature_columns is empty"),
        ({"feature_columns": 3}, "feature_columns must be"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "below 1"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(ConfigError, match=match):
        Embeddings(**options)
