"""``python -m datamodules.multi_bird --variant hard --out data/multi_bird_hard``."""
from datamodules.multi_bird.build import main

raise SystemExit(main())
