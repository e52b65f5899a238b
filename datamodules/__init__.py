"""One LightningDataModule per dataset. Batches are dicts: ``image`` (float in [0, 1]), ``label``, ``index``."""
