"""Records that arrive one at a time or as one file between batch runs: matched into the
published run with the batch's own model, standardization and clustering rules."""
