"""engine.plan (the estimate of a profile against GPUs, suggestions, what fits where), the `tunetop estimate`
and `tunetop fit` commands, and the dataset preview process the run builder starts."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine.estimate import architectures, vram
from engine.plan import check_profile, common_cards, detect, pick_card, resolve_config
from engine.plan.capacity import capacity
from engine.plan.profile_estimate import run_estimate, settings_of
from engine.profile import load_named

from .helpers import DATA, ROOT, TINY_MODEL, run_cli
from .tui_helpers import GIB, two_gpus

CARD_16 = 16380 * 1024**2   # RTX 4060 Ti 16 GB


def test_config_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    # engine.estimate.find_config does the finding; the builder's wrapper turns "unavailable" into a reason.
    assert resolve_config(str(TINY_MODEL)).origin.startswith("local folder")
    assert resolve_config("meta-llama/Llama-3.1-8B-Instruct").origin.startswith("bundled table")
    missing = resolve_config(str(tmp_path / "gone"))
    assert missing.config is None and "does not exist" in missing.problem
    unknown = resolve_config("someorg/some-model")
    assert unknown.config is None and "not in the Hugging Face cache" in unknown.problem
    assert "bundled architectures" in unknown.problem
    snap = tmp_path / "hf" / "hub" / "models--someorg--some-model" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text((TINY_MODEL / "config.json").read_text())
    assert resolve_config("someorg/some-model").origin.startswith("HF cache")


def test_profile_settings_reach_the_estimator():
    p = load_named("llama3.1-8b-qlora-24gb")
    fc = check_profile(p, [pick_card("4090")])
    direct = vram.estimate(architectures.lookup(p.model.name_or_path), method="qlora", micro_batch=4, seq_len=2048,
                           lora_r=16, gradient_checkpointing=True, optimizer="paged_adamw_8bit",
                           lora_dropout=p.method.lora_dropout)
    assert fc.estimate.total == direct.total
    assert [g.verdict for g in fc.gpus] == ["fits"]


def test_suggestions_come_from_the_estimator_and_keep_the_effective_batch():
    p = load_named("llama3.1-8b-qlora-24gb")
    p.training.gradient_checkpointing, p.training.max_seq_len = False, 1024
    fc = check_profile(p, [pick_card("4060")])
    assert fc.gpus[0].verdict == "does not fit" and fc.target.name == "RTX 4060 Ti 16 GB"
    by_change = {k: x for x in fc.suggestions for k in x.changes}
    mb = by_change["micro_batch"].changes
    assert mb["micro_batch"] * mb["grad_accum"] == p.training.micro_batch * p.training.grad_accum
    assert by_change["gradient_checkpointing"].verdict == "fits"
    cfg = architectures.lookup(p.model.name_or_path)
    seq = by_change["seq_len"]
    assert seq.total == run_estimate(cfg, replace(settings_of(p), seq_len=seq.changes["seq_len"])).total
    p.method.type = "lora"
    p.training.gradient_checkpointing, p.training.max_seq_len = True, 2048
    texts = [x.text for x in check_profile(p, [pick_card("4060")]).suggestions]
    assert any("QLoRA (4-bit base) instead of LoRA" in t for t in texts), texts


def test_nothing_fits_says_so():
    fc = check_profile(load_named("llama3.1-70b-qlora-80gb"), [pick_card("A100 40")])
    assert fc.gpus[0].verdict == "does not fit" and "A100 40 GB" in fc.note


def test_auto_micro_batch_reports_the_largest_that_fits():
    p = load_named("llama3.1-8b-qlora-24gb")
    p.training.micro_batch = "auto"
    fc = check_profile(p, [pick_card("4090"), pick_card("H100")])
    small, big = (g.auto_micro_batch for g in fc.gpus)
    assert 1 <= small < big
    s = replace(settings_of(p), micro_batch=small)
    cfg = architectures.lookup(p.model.name_or_path)
    assert vram.verdict(run_estimate(cfg, s).total, fc.gpus[0].card.total_bytes) == "fits"
    assert vram.verdict(run_estimate(cfg, replace(s, micro_batch=small + 1)).total,
                        fc.gpus[0].card.total_bytes) != "fits"


def test_capacity_grows_with_the_card_and_orders_methods():
    small = {c.method: c for c in capacity(CARD_16, 2048)}
    big = {c.method: c for c in capacity(pick_card("H100").total_bytes, 2048)}
    for method in ("qlora", "lora", "full"):
        assert big[method].fits.params >= (small[method].fits.params if small[method].fits else 0)
    assert small["qlora"].fits.params >= small["lora"].fits.params >= small["full"].fits.params


def test_detect_uses_the_telemetry_source():
    cards, why = detect(two_gpus())
    assert [c.name for c in cards] == ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"] and why is None
    assert cards[0].total_bytes == 80 * GIB and cards[0].detected

    class Broken:
        def sample_devices(self):
            raise RuntimeError("driver gone")
    assert detect(Broken()) == ([], "cannot read GPUs (driver gone)")


# -- the commands -----------------------------------------------------------------------------------------

def test_estimate_command_prints_the_table(home):
    r = run_cli("estimate", "llama3.1-8b-qlora-24gb", "--gpu", "4090", timeout=60)
    assert r.returncode == 0, r.stderr
    for needle in ("bundled table", "weights", "adapters + their grads", "optimizer state", "activations", "logits",
                   "CUDA overhead", "total", "RTX 4090 24 GB", "fits"):
        assert needle in r.stdout, r.stdout
    p = load_named("llama3.1-8b-qlora-24gb")
    total = check_profile(p, []).estimate.total
    assert f"{total / GIB:.1f} GiB" in r.stdout       # the same figure as the builder's panel


def test_estimate_command_without_a_profile_and_with_suggestions(home):
    r = run_cli("estimate", "--model", "meta-llama/Llama-3.1-8B", "--method", "lora", "--micro-batch", "8",
                "--seq", "4096", "--no-checkpointing", "--gpu", "4090", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "does not fit" in r.stdout and "to fit RTX 4090 24 GB (effective batch kept)" in r.stdout
    assert "effective batch 32 kept" in r.stdout and "turn on gradient checkpointing" in r.stdout


def test_estimate_command_without_gpu_compares_common_cards(home):
    r = run_cli("estimate", "demo", timeout=60)
    assert r.returncode == 0 and "no NVIDIA GPU detected" in r.stdout
    assert all(c.name in r.stdout for c in common_cards())


@pytest.mark.parametrize("args,needles", [
    (["--model", "someorg/nothing"], ["estimate unavailable", "not in the Hugging Face cache", "config.json"]),
    (["demo", "--micro-batch", "abc"], ['training.micro_batch: expected a whole number or "auto"']),
    (["demo", "--seq", "0"], ["training.max_seq_len: expected a whole number from 8"]),
    (["demo", "--gpu", "TPU v5"], ['--gpu "TPU v5" is not a card tunetop knows', "RTX 4090 24 GB"]),
    ([], ["give a profile or --model"]),
])
def test_estimate_command_bad_input(home, args, needles, tmp_path):
    r = run_cli("estimate", *args, timeout=60, env={"HF_HOME": str(tmp_path / "hf")})
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def test_fit_command(home):
    r = run_cli("fit", "--gpu", "4090", "--seq", "2048", timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("RTX 4090 24 GB (24.0 GiB) at seq 2048")
    for method in ("qlora", "lora", "full"):
        row = next(line for line in lines if line.strip().startswith(method + " "))
        best = next(c for c in capacity(pick_card("4090").total_bytes, 2048) if c.method == method).fits
        assert best.model_id in row
    r = run_cli("fit", timeout=60)
    assert r.returncode == 0 and "no NVIDIA GPU detected" in r.stdout and "H100 80 GB" in r.stdout


# -- the preview process ------------------------------------------------------------------------------------

def _preview(profile_path) -> dict:
    out = subprocess.run([sys.executable, "-m", "engine.train.preview", str(profile_path), "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_preview_process_counts_tokens_and_marks_truncation(make_profile):
    path = make_profile("p", {"training": {"max_seq_len": 32}})
    r = _preview(path)
    assert r["ok"] and r["format"] == "messages" and r["rows"] == 400
    assert r["p50"] <= r["p90"] <= r["p99"] <= r["max"] and r["over"] > 0
    ex = r["example"]
    if ex["tokens"] > 32:
        assert ex["cut_at"] is not None and 0 < ex["cut_at"] < len(ex["text"])
    text_profile = make_profile("t", {"data": {"path": str(DATA / "text")}, "training": {"max_seq_len": 64}})
    t = _preview(text_profile)
    assert t["ok"] and t["format"] == "text" and t["blocks"] >= 1 and t["example"]["packed"]


def test_preview_process_reports_bad_data_with_rows(make_profile, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": "x"}\n{oops\n')
    r = _preview(make_profile("b", {"data": {"path": str(bad)}}))
    assert not r["ok"] and r["stage"] == "data" and "bad.jsonl:1" in r["error"] and "bad.jsonl:2" in r["error"]


# -- issue 12: units, unsupported input, fit with the HF cache, MoE validator rule ---------------------------

def test_estimate_demo_counts_in_readable_units(home):
    r = run_cli("estimate", "demo", "--gpu", "4090", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "139.6 K parameters, 16.4 K trained" in r.stdout and "0.0 M" not in r.stdout


def test_unsupported_architecture_says_what_it_cannot_estimate_and_never_blocks(home, tmp_path, make_profile):
    folder = tmp_path / "mamba"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 768,
                                                    "num_hidden_layers": 24, "vocab_size": 50280}))
    r = run_cli("estimate", "--model", str(folder), "--gpu", "4090", timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 2 and "Traceback" not in out
    assert "estimate unavailable: model_type 'mamba' is not supported by the estimate" in out
    assert "supported families:" in out and "launching still works" in out
    p = load_named("demo")
    p.model.name_or_path = str(folder)
    fc = check_profile(p, [pick_card("4090")])
    assert not fc.available and "mamba" in fc.problem   # a value, not an exception: the builder still launches


def _cache_model(hub: Path, repo: str, config: dict) -> None:
    snap = hub / ("models--" + repo.replace("/", "--")) / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(config))
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("c" * 40)


def test_fit_includes_models_in_the_hf_cache_and_the_next_size_up(home, tmp_path):
    hub = tmp_path / "hf" / "hub"
    # A model in the cache (Qwen3 with 42 layers: 9.35 B, just above the bundled 9.24 B Gemma 2 that is LoRA's
    # largest on 24 GB otherwise), plus one the estimate refuses.
    _cache_model(hub, "someorg/qwen3-9b5", {**architectures.lookup("Qwen/Qwen3-8B"), "num_hidden_layers": 42})
    _cache_model(hub, "someorg/a-mamba", {"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 2})
    r = run_cli("fit", "--gpu", "4090", timeout=120, env={"HF_HUB_CACHE": str(hub)})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    lora = next(line for line in lines if line.strip().startswith("lora "))
    assert "someorg/qwen3-9b5 (HF cache)  9.35 B" in lora, lora      # now the largest LoRA fits on 24 GB
    assert "a-mamba" not in r.stdout
    for method in ("qlora", "lora", "full"):
        row = next(line for line in lines if line.strip().startswith(method + " "))
        # next size up: a larger model with its figure and verdict
        assert " GiB, " in row and ("does not fit" in row or "tight" in row), row
    caps = {c.method: c for c in capacity(pick_card("4090").total_bytes, 2048)}
    assert caps["qlora"].fits.params > caps["lora"].fits.params > caps["full"].fits.params
    assert caps["qlora"].next_up.params > caps["qlora"].fits.params


def test_moe_with_lora_dropout_on_the_experts_is_a_validator_error(home, make_profile, tmp_path):
    """peft refuses lora_dropout != 0 on expert adapters (ParamWrapper): `tunetop validate` says so before a
    launch, naming the field, for a model not even downloaded (the bundled table knows its architecture)."""
    from engine.profile import ProfileError, load, preflight

    env = {"HF_HOME": str(tmp_path / "hf")}
    path = make_profile("moe", {"model": {"name_or_path": "mistralai/Mixtral-8x7B-v0.1"},
                                "method": {"type": "lora", "lora_dropout": 0.05}})
    p = load(path)
    with pytest.raises(ProfileError) as err:
        preflight.check(p)
    problem = next(x for x in err.value.problems if x.where == "method.lora_dropout")
    assert "experts" in problem.message and "lora_dropout = 0" in problem.hint
    r = run_cli("validate", str(path), timeout=60, env=env)
    assert r.returncode == 2 and "method.lora_dropout" in r.stdout + r.stderr
    p.method.target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]   # attention only: allowed
    preflight.check(p)
    p.method.target_modules, p.method.lora_dropout = "all-linear", 0.0
    preflight.check(p)
