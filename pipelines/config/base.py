"""What every part of the config file's contract shares: strict models, names, file formats."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SOURCE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
SURVIVORSHIP_RULES = ("trust", "recent", "frequent")
_NAME = r"^[a-z0-9_]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Strict):
    value: str = Field(description='A constant for every record of the source, e.g. country = { value = "NL" }.')
