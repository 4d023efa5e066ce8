"""Survey data: the galclip dataset format, readers for survey files, transforms."""
from galclip.data.dataset import GalaxyDataset, column_to_numpy, open_dataset
from galclip.data.format import (
    DatasetError,
    Provenance,
    read_manifest,
    shard_name,
    validate_dataset,
    write_manifest,
    write_shard,
)

__all__ = ["GalaxyDataset", "DatasetError", "Provenance", "column_to_numpy", "open_dataset",
           "read_manifest", "shard_name", "validate_dataset", "write_manifest", "write_shard"]
