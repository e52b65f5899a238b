"""Logs a batch job can keep: with stderr not a terminal, progress is a line now and then, not a redrawn bar."""
from __future__ import annotations

import io

import pytest

from callbacks.progress import LineProgress, wants_lines
from tests.conftest import cli


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_keeps_the_bar_and_a_file_gets_lines(monkeypatch):
    monkeypatch.delenv("SPLITLAB_PROGRESS", raising=False)
    assert wants_lines(io.StringIO()) and not wants_lines(_Tty())
    monkeypatch.setenv("SPLITLAB_PROGRESS", "bar")
    assert not wants_lines(io.StringIO())
    monkeypatch.setenv("SPLITLAB_PROGRESS", "lines")
    assert wants_lines(_Tty())


@pytest.mark.slow
def test_a_fit_into_a_log_file_writes_progress_lines_not_a_bar(tmp_path):
    line_every = '{"class_path": "callbacks.progress.LineProgress", "init_args": {"every_s": 0.5}}'
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_steps=40", "--trainer.limit_val_batches=2",
             "--trainer.val_check_interval=20", "--trainer.callbacks=[]", f"--trainer.callbacks+={line_every}",
             "--trainer.logger=false", "--trainer.accelerator=cpu", f"--trainer.default_root_dir={tmp_path}"],
            env={"SPLITLAB_PROGRESS": ""})  # stdout and stderr are pipes here, as in a SLURM job
    assert r.returncode == 0, r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert "\r" not in log and "it/s]" not in log  # no tqdm bar
    lines = [x for x in r.stderr.splitlines() if x.startswith("[train")]
    assert lines[0].startswith("[train] from step 0 to 40") and lines[-1].startswith("[train done] epoch") and " step 40/40 " in lines[-1]
    assert any("steps/s" in x and "loss" in x for x in lines[1:])
    assert sum(x.startswith("[val] epoch") and " step 20 |" in x for x in r.stderr.splitlines()) == 1


@pytest.mark.slow
def test_the_default_bar_is_replaced_in_a_log_file(tmp_path):
    r = cli(["fit", "--config", "configs/quickstart.yaml", "--trainer.max_steps=3", "--trainer.limit_val_batches=1",
             "--trainer.callbacks=[]", "--trainer.logger=false", "--trainer.accelerator=cpu",
             f"--trainer.default_root_dir={tmp_path}"], env={"SPLITLAB_PROGRESS": ""})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "\r" not in r.stderr and "[train] from step 0 to 3; a line every 60 s" in r.stderr
    assert len(r.stdout + r.stderr) < 20_000
    assert LineProgress().every_s == 60.0
