"""Synthetic siloed customer data with known ground truth: the `unify demo` data set and the linkage-accuracy fixture.

Four source systems describe overlapping persons in their own formats and noise; truth.parquet says who is who.
"""

from pipelines.demo.generator import DemoManifest, generate

__all__ = ["DemoManifest", "generate"]
