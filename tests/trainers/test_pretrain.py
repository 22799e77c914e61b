"""The shipped base checkpoint: present, small, loadable, and as good on unseen data as its record says;
the pretraining script, in a short setting, trains a base from nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from toolgym.trainers.pretrain import base_checkpoint, heldout_lm_loss

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_base_is_small_loadable_and_documented():
    folder = base_checkpoint()
    weights = folder / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 20 * 2**20
    record = json.loads((folder / "pretrain.json").read_text())
    assert record["steps"] > 0 and record["conversations"] > 1000
    from toolgym.policies.hf_policy import HFPolicy

    policy = HFPolicy.from_pretrained(folder)
    assert "<|tool_calls_section_begin|>" in policy.tokenizer.chat_template
    policy.close()


def test_shipped_base_quality_holds_on_unseen_conversations():
    folder = base_checkpoint()
    record = json.loads((folder / "pretrain.json").read_text())
    loss = heldout_lm_loss(folder, n_per_domain=6)
    # A fresh model scores ~7.6 (ln 2053); the shipped base must be near its recorded training loss.
    assert loss < record["final_loss"] + 0.5, (loss, record["final_loss"])


def test_script_trains_a_base_from_nothing(tmp_path):
    out = tmp_path / "base"
    cmd = [sys.executable, str(ROOT / "scripts" / "pretrain_base.py"), "--out", str(out), "--scale", "0.004", "--epochs", "4",
           "--warmup", "2", "--log-every", "3", "--threads", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "pretrain.json").read_text())
    curve = record["loss_curve"]
    assert record["steps"] >= 5 and curve[-1] < 0.75 * 7.6, curve  # well below the ~7.6 of random weights
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
