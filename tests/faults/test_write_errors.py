"""Full disk and I/O errors while writing checkpoints and results: the previous good
state stays intact and the error names what failed and where."""

import errno

import pytest

import optimal_sparsity.atomic as atomic
import optimal_sparsity.checkpoint as ck
from optimal_sparsity.checkpoint import verify_checkpoint
from optimal_sparsity.results.table import Row, read_rows, write_part
from optimal_sparsity.train.loop import Trainer
from optimal_sparsity.train.state import list_checkpoints


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_checkpoint_write_error_keeps_previous(tiny_train_config, tmp_path, monkeypatch, code):
    cfg = tiny_train_config.replace(steps=6, ckpt_interval=2, keep_last=5, keep_fractions=())
    t = Trainer(cfg, tmp_path / "run", progress=False)
    calls = {"n": 0}
    real = ck.save_file

    def failing(tensors, path, *a, **k):
        calls["n"] += 1
        if "step-0000004" in str(path):
            raise OSError(code, "simulated")
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ck, "save_file", failing)
    with pytest.raises(OSError) as err:
        t.run()
    msg = str(err.value)
    assert "could not write" in msg and "step-0000004" in msg and "simulated" in msg
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [s for s, _ in ckpts] == [2]
    verify_checkpoint(ckpts[0][1])
    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()]
    assert leftovers == ["step-0000002"], leftovers  # the temporary dir was removed
    # with the disk back, the run resumes from step 2 and finishes
    monkeypatch.setattr(ck, "save_file", real)
    assert Trainer(cfg, tmp_path / "run", progress=False).run().status == "finished"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_results_write_error_keeps_previous(tmp_path, monkeypatch, code):
    good = [Row(run="r", model="m", step=1, task="t", metric="acc", value=0.5)]
    path = write_part(tmp_path, "p.jsonl", good)
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError(code, "simulated")

    monkeypatch.setattr(atomic.os, "fsync", failing_fsync)
    with pytest.raises(OSError, match=r"could not write .*p\.jsonl: simulated"):
        write_part(tmp_path, "p.jsonl", [Row(run="r", model="m", step=1, task="t",
                                             metric="acc", value=0.9)])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [r.value for r in read_rows(tmp_path)] == [0.5]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
