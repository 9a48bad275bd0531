"""The teacher's beam search for distillation runs fairseq-generate in fp16 on a GPU and in fp32 on the CPU."""

from pathlib import Path

import pytest

from vqnat.pipeline import distill
from vqnat.pipeline.prepared import PreparedFolder


class Reached(Exception):
    pass


@pytest.mark.parametrize(("cpu", "flag"), [(False, "--fp16"), (True, "--cpu")])
def test_generate_precision_follows_the_device(monkeypatch, tmp_path, cpu, flag):
    def stop(tool, args, **kwargs):
        raise Reached(tool, list(args))

    monkeypatch.setattr(distill, "run_fairseq", stop)
    folder = PreparedFolder(tmp_path, tmp_path / "data-bin", "en", "de", {"sizes": {"train": 1}})
    with pytest.raises(Reached) as reached:
        distill.teacher_hypotheses(Path("teacher.pt"), folder, "train", 4, 8192, cpu, None, tmp_path / "gen")
    tool, args = reached.value.args
    assert tool == "generate" and flag in args
    assert ("--fp16" in args) != cpu and ("--cpu" in args) == cpu
