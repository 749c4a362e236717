"""The Ali-CCP loader algorithm shared by the seed pipeline and NVIDIA Merlin's prepare_aliccp.

Reproduced here only as the benchmark's baseline (see ../shared/aliccp-format.md, "What
existing loaders get wrong"): single-threaded Python, a dict of all common features in
memory, one dict per skeleton row built with dict(zip(fields, ids)) (so a multi-valued field
keeps only its last id, and the weights are dropped), a pandas DataFrame per chunk written
to parquet. One defect is fixed so the comparison is fair to it: the rows after the last
full chunk are written too (the seed loses them).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _ids_by_field(feature_list: str) -> dict[str, str]:
    fields, ids = [], []
    for feature in feature_list.split("\x01"):
        field, rest = feature.split("\x02")
        fields.append(field)
        ids.append(rest.split("\x03")[0])
    return dict(zip(fields, ids))


def load_split(raw: Path, split: str, out: Path, chunk_rows: int = 200_000) -> int:
    """Convert one split; return the number of impressions written."""
    out.mkdir(parents=True, exist_ok=True)
    common: dict[str, dict[str, str]] = {}
    with open(raw / f"common_features_{split}.csv") as f:
        for line in f:
            key, _num, feature_list = line.rstrip("\r\n").split(",")
            common[key] = _ids_by_field(feature_list)
    rows, written, part = [], 0, 0
    with open(raw / f"sample_skeleton_{split}.csv") as f:
        for line in f:
            sample_id, click, conversion, key, _num, feature_list = line.rstrip("\r\n").split(",")
            row = _ids_by_field(feature_list)
            row.update(common.get(key, {}))
            row["sample_id"], row["click"], row["conversion"] = sample_id, click, conversion
            rows.append(row)
            if len(rows) == chunk_rows:
                pd.DataFrame(rows).to_parquet(out / f"{split}_{part:05d}.parquet")
                written, part, rows = written + len(rows), part + 1, []
    if rows:
        pd.DataFrame(rows).to_parquet(out / f"{split}_{part:05d}.parquet")
        written += len(rows)
    return written
