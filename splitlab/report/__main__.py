"""``python -m splitlab.report RUNS...`` (same as ``python -m splitlab report``)."""
from splitlab.report.command import main

raise SystemExit(main())
