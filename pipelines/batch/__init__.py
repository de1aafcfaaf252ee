"""The batch run, stage by stage: read the sources (ingest), standardize, link (train and
predict with splink), cluster into profiles with stable ids, survivorship, publish
(run), and export what was published."""
