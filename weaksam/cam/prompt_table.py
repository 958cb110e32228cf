"""The prompt table ``prompts/{split}.parquet`` on disk: ``image_id, x, y, class_id, score,
source``, with the classes, split and format version in the parquet metadata.

Kept apart from weaksam.cam.prompts (which finds peaks with torch) so that the jobs that only
read prompts do not import torch.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from weaksam.io import atomic_path

PROMPT_COLUMNS = ("image_id", "x", "y", "class_id", "score", "source")
PROMPTS_FORMAT_VERSION = 1


def write_prompts(df: pd.DataFrame, path: str, *, classes: tuple[str, ...], split: str) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = {"classes": list(classes), "split": split, "format_version": PROMPTS_FORMAT_VERSION}
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"weaksam": json.dumps(meta).encode()}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_prompts(path: str) -> pd.DataFrame:
    table = pq.read_table(path)
    if b"weaksam" not in (table.schema.metadata or {}):
        raise ValueError(f"{path}: not a weaksam prompts file")
    missing = [c for c in PROMPT_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: prompts file lacks columns {missing}")
    return table.to_pandas()
