"""What every part of the config file's contract shares: strict models, names, file formats."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

SOURCE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
SURVIVORSHIP_RULES = ("trust", "recent", "frequent")
_NAME = r"^[a-z0-9_]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Strict):
    value: str = Field(description='A constant for every record of the source, e.g. country = { value = "NL" }.')


class FileConfig(_Strict):
    """What a [[sources]] and an [[events]] block share: a file whose format its extension says."""

    path: Path = Field(description="The file; format from the extension (.csv .tsv .parquet .json .ndjson).")

    @property
    def format(self) -> str:
        return SOURCE_FORMATS[self.path.suffix.lower()]

    @field_validator("path")
    @classmethod
    def _known_format(cls, value: Path) -> Path:
        if value.suffix.lower() not in SOURCE_FORMATS:
            raise ValueError(f"unsupported file type {value.suffix!r}; use one of {', '.join(SOURCE_FORMATS)}")
        return value
