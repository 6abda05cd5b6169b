"""The [distributed] section: bad combinations are errors naming the field, `strategy = "auto"` says what it
picked and why, and the torchrun command line / environment follow the layout. No training here (fast)."""
from __future__ import annotations

import socket
import sys

import pytest

from engine.distributed import LayoutError, resolve, torchrun_command, torchrun_env
from engine.distributed.estimate import balanced_layers
from engine.errors import render_text
from engine.profile import ProfileError, loads

from .helpers import merged, run_cli, toml_text


def profile(distributed: dict | None = None, **sections):
    raw = merged({"distributed": distributed or {}, **sections})
    return loads(toml_text(raw))


def problem(distributed: dict, **sections) -> str:
    with pytest.raises(ProfileError) as info:
        profile(distributed, **sections)
    return render_text(info.value)   # what the user reads: the problems and their hints


@pytest.mark.parametrize("distributed, field, words", [
    ({"gpus": "0,1,0"}, "distributed.gpus", "GPU 0 is given twice"),
    ({"gpus": "0,x"}, "distributed.gpus", '"x" is not a GPU index'),
    ({"processes": 0}, "distributed.processes", "expected a whole number from 1"),
    ({"nnodes": 2}, "distributed.rdzv_endpoint", "nnodes = 2 needs the address of machine 0"),
    ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:29500"}, "distributed.node_rank", "node_rank = 2 but nnodes = 2"),
    ({"nnodes": 2, "rdzv_endpoint": "h"}, "distributed.rdzv_endpoint", "has no port"),
    ({"strategy": "model_parallel", "gpus": "0,1", "processes": 2}, "distributed.processes",
     "model_parallel runs one process, not 2"),
    ({"strategy": "model_parallel", "gpus": "0"}, "distributed.gpus", "needs at least two GPUs"),
    ({"gpus": "0,1", "processes": 3}, "distributed.processes", "processes = 3 but gpus lists 2 GPUs"),
    ({"strategy": "fsdp"}, "distributed.strategy", "this layout has one"),
])
def test_bad_combinations_name_the_field(distributed, field, words):
    text = problem(distributed)
    assert f"{field}: " in text and words in text and "hint: " in text, text


def test_strategy_the_optimizer_or_batch_cannot_use_is_refused():
    text = problem({"strategy": "fsdp", "processes": 2}, training={"optimizer": "paged_adamw_8bit"})
    assert "training.optimizer: paged_adamw_8bit cannot be sharded" in text and "adamw_torch" in text
    # micro_batch = "auto": the ranks search together under DDP (tests/test_distributed.py runs it); FSDP cannot
    # split a batch, so there it is refused by the validator, and at launch when "auto" picks fsdp.
    assert profile({"processes": 2}, training={"micro_batch": "auto"}).training.micro_batch == "auto"
    text = problem({"strategy": "fsdp", "processes": 2}, training={"micro_batch": "auto"})
    assert "training.micro_batch: " in text and 'strategy = "fsdp" cannot' in text and 'strategy = "ddp"' in text
    with pytest.raises(LayoutError) as info:
        resolve(profile({"gpus": "0,1"}, training={"micro_batch": "auto"}), gpu_count=2, fits_one_gpu=lambda: False)
    assert str(info.value).startswith("training.micro_batch: ") and "fsdp" in str(info.value)
    assert 'strategy = "ddp"' in info.value.hint


def test_effective_batch_counts_every_process():
    p = profile({"processes": 2}, training={"micro_batch": 4, "grad_accum": 2})
    assert p.world_size == 2 and p.effective_batch == 16
    p = profile({"gpus": "0,1,2", "nnodes": 2, "rdzv_endpoint": "h:1"}, training={"micro_batch": 2, "grad_accum": 3})
    assert p.world_size == 6 and p.effective_batch == 36


def test_resolve_checks_gpus_against_this_machine():
    with pytest.raises(LayoutError) as info:
        resolve(profile({"gpus": "0,3"}), gpu_count=2)
    assert "distributed.gpus: GPU 3 does not exist: this machine has 2 GPUs (0, 1)" in str(info.value)
    with pytest.raises(LayoutError) as info:
        resolve(profile({"gpus": "all"}), gpu_count=0)
    assert "no GPU was found" in str(info.value) and "processes" in info.value.hint
    with pytest.raises(LayoutError) as info:
        resolve(profile({"strategy": "model_parallel"}), gpu_count=0)
    assert "model_parallel" in str(info.value) and "two GPUs" in str(info.value)


def test_auto_strategy_says_what_it_picked_and_why():
    cpu = resolve(profile({"processes": 2}), gpu_count=0)
    assert (cpu.strategy, cpu.device, cpu.backend, cpu.world_size) == ("ddp", "cpu", "gloo", 2)
    assert "gloo" in cpu.reason
    fits = resolve(profile({"gpus": "0,1"}), gpu_count=2, fits_one_gpu=lambda: True)
    assert fits.strategy == "ddp" and "fits one GPU" in fits.reason and fits.gpus == (0, 1)
    big = resolve(profile({"gpus": "all"}), gpu_count=4, fits_one_gpu=lambda: False)
    assert big.strategy == "fsdp" and "shards lora" in big.reason and big.world_size == 4
    q = {"method": {"type": "qlora", "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0}}
    qlora = resolve(profile({"gpus": "0,1"}, **q), gpu_count=2, fits_one_gpu=lambda: False,
                    fits_sharded=lambda world: True)
    assert qlora.strategy == "fsdp" and "FSDP-QLoRA" in qlora.reason
    split = resolve(profile({"gpus": "0,1"}, **q), gpu_count=2, fits_one_gpu=lambda: False,
                    fits_sharded=lambda world: False)
    assert split.strategy == "model_parallel" and split.processes == 1 and not split.uses_torchrun
    one = resolve(profile({}), gpu_count=1)
    assert one.strategy == "single" and not one.uses_torchrun


def test_port_in_use_on_machine_0_is_refused():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = profile({"nnodes": 2, "node_rank": 0, "rdzv_endpoint": f"127.0.0.1:{port}", "processes": 1})
        with pytest.raises(LayoutError) as info:
            resolve(p, gpu_count=0)
        assert f"port {port} is already in use" in str(info.value)
        # Machine 1 connects to that port: it must be in use there (by machine 0).
        p1 = profile({"nnodes": 2, "node_rank": 1, "rdzv_endpoint": f"127.0.0.1:{port}", "processes": 1})
        assert resolve(p1, gpu_count=0).node_rank == 1


def test_torchrun_command_and_environment(tmp_path):
    single_node = resolve(profile({"gpus": "1,3"}), gpu_count=4, fits_one_gpu=lambda: True)
    cmd = torchrun_command(single_node, tmp_path, ["--resume"])
    assert cmd[:3] == [sys.executable, "-m", "engine.distributed.agent"]
    assert cmd[cmd.index("--nproc-per-node") + 1] == "2" and "--standalone" in cmd
    assert cmd[-4:] == ["-m", "engine.train", str(tmp_path), "--resume"]
    assert cmd[cmd.index("--max-restarts") + 1] == "0"
    env = torchrun_env(single_node)
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3" and env["TUNETOP_STRATEGY"] == "ddp"
    nodes = resolve(profile({"processes": 2, "nnodes": 2, "node_rank": 1, "rdzv_endpoint": "10.0.0.1:29511"}),
                    gpu_count=0)
    cmd = torchrun_command(nodes, tmp_path, [])
    assert "--standalone" not in cmd
    for flag, value in (("--nnodes", "2"), ("--node-rank", "1"), ("--master-addr", "10.0.0.1"),
                        ("--master-port", "29511")):
        assert cmd[cmd.index(flag) + 1] == value
    assert torchrun_env(nodes)["CUDA_VISIBLE_DEVICES"] == ""   # CPU ranks never pick up a GPU


def test_balanced_layer_split():
    assert balanced_layers(80, 2) == [40, 40]
    assert balanced_layers(61, 2) == [30, 31]
    assert sum(balanced_layers(61, 3)) == 61 and balanced_layers(61, 3)[1] == 21


def test_cli_flags_obey_the_same_rules(home, make_profile):
    path = make_profile("flags")
    out = run_cli("run", str(path), "--processes", "2", "--strategy", "model_parallel")
    assert out.returncode == 2 and "distributed.processes: model_parallel runs one process, not 2" in out.stderr
    out = run_cli("run", str(path), "--nnodes", "2", "--node-rank", "0")
    assert out.returncode == 2 and "distributed.rdzv_endpoint" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("run", str(path), "--gpus", "0,1")   # no GPU on the test machine
    assert out.returncode == 2 and "distributed.gpus: GPU 0 does not exist" in out.stderr, out.stderr


def test_resume_on_another_world_size_warns_or_refuses(tmp_path):
    """Never silent: DDP/one process -> a warning that the data order changes; to or from FSDP -> refused."""
    from engine.events import EventWriter
    from engine.train.distributed_setup import check_world_change
    from engine.train.errors import SetupError

    writer = EventWriter(tmp_path / "events.jsonl")
    writer.write("start", world_size=2, strategy="ddp")
    writer.close()
    said = []
    check_world_change(tmp_path, 2, "ddp", lambda m, level="info": said.append((level, m)))
    assert said == []
    check_world_change(tmp_path, 1, "single", lambda m, level="info": said.append((level, m)))
    assert said and said[0][0] == "warning" and "data order" in said[0][1] and "resume with 2 processes" in said[0][1]
    with pytest.raises(SetupError) as info:
        check_world_change(tmp_path, 4, "fsdp", lambda m, level="info": None)
    assert 'strategy = "ddp"' in info.value.hint
