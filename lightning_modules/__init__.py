"""Model families as LightningModules: vae, gmvae, spair, flow_vae (+ classifier, the Table 1 judge); SPLIT in split.py."""
