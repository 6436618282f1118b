"""The same training command under ``torchrun`` and ``accelerate launch``: two CPU processes (gloo backend).

Each run must train one model (DDP: every rank ends training with bit-identical weights; without the gradient
all-reduce each process would train its own copy on its shard of the data), write only from rank 0 (the entry script
below records every adapter save with its rank), and leave an adapter that loads and predicts.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hf_adapter_kit import from_pretrained, pipeline


ENTRY = """
import os, sys
from pathlib import Path
import hf_adapter_kit.training.result as result
import hf_adapter_kit.training.trainer as trainer

def recording(original):
    def save(*args, **kwargs):
        with Path(os.environ["KIT_WRITES"], f"rank-{os.environ.get('RANK', '0')}-{os.getpid()}").open("a") as log:
            log.write(str(args[1] if len(args) > 1 else kwargs.get("directory")) + chr(10))
        return original(*args, **kwargs)
    return save

def digest(original):
    def load_best(self):  # the weights each rank ends training with, before the best checkpoint is restored
        import hashlib
        weights = hashlib.sha256()
        for name, p in sorted(self.model.named_parameters()):
            if p.requires_grad:
                weights.update(name.encode() + p.detach().cpu().numpy().tobytes())
        Path(os.environ["KIT_WEIGHTS"], f"rank-{os.environ['RANK']}").write_text(weights.hexdigest())
        return original(self)
    return load_best

result.save_adapter = recording(result.save_adapter)    # the final adapter
trainer.save_adapter = recording(trainer.save_adapter)  # checkpoints
trainer.KitTrainer._load_best_model = digest(trainer.KitTrainer._load_best_model)
from hf_adapter_kit.commands.cli import main
sys.exit(main(sys.argv[1:]))
"""
LAUNCHERS = {
    "torchrun": lambda port: ["torchrun", "--nproc_per_node", "2", "--master_port", str(port)],
    "accelerate": lambda port: [
        "accelerate",
        "launch",
        "--config_file",
        "recipes/accelerate/ddp-cpu.yaml",
        "--main_process_port",
        str(port),
    ],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_processes_train_and_only_rank_zero_writes(launcher, tiny_model_dirs, toy_files, tmp_path):
    entry = tmp_path / "entry.py"
    entry.write_text(ENTRY)
    writes = tmp_path / "writes"
    writes.mkdir()
    weights = tmp_path / "weights"
    weights.mkdir()
    out = tmp_path / "run"
    args = ["train", "--method", "pfeiffer", "--task", "toy", "--output_dir", str(out)]
    args += ["--model_name_or_path", tiny_model_dirs["bert"], "--num_train_epochs", "2", "--max_length", "16"]
    args += ["--per_device_train_batch_size", "8", "--disable_tqdm", "true", "--ddp_backend", "gloo"]
    for key, value in toy_files.items():
        args += [f"--{key}", value]
    prefix = LAUNCHERS[launcher](_free_port())
    command = [str(Path(sys.executable).parent / prefix[0]), *prefix[1:]]  # the launchers of this virtualenv
    env = os.environ | {"KIT_WRITES": str(writes), "KIT_WEIGHTS": str(weights), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*command, str(entry), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    digests = {name: (weights / name).read_text() for name in sorted(os.listdir(weights))}
    assert sorted(digests) == ["rank-0", "rank-1"], digests
    assert len(set(digests.values())) == 1, digests  # one model, trained together
    ranks = {name.split("-")[1] for name in os.listdir(writes)}
    assert ranks == {"0"}, sorted(os.listdir(writes))  # checkpoints and the final adapter, all from rank 0
    saved = [line for name in os.listdir(writes) for line in (writes / name).read_text().splitlines()]
    assert len(saved) == 3, saved  # two checkpoints and the final adapter
    # 64 examples / (2 processes x 8) = 4 steps an epoch: the processes shared the data
    meta = json.loads((out / "adapter" / "hf_adapter_kit.json").read_text())
    assert meta["training"]["global_steps"] == 8
    model = from_pretrained(out / "adapter")
    predictions = pipeline("text-classification", model=model)(["the flight was great today"])
    assert predictions[0]["label"] in {"negative", "positive"}
