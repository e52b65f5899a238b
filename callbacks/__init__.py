"""Evaluations and pictures as Lightning callbacks; metric state lives in torchmetrics objects."""
