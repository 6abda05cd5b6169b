"""The profile schema: every field a run can set, its type, default, allowed values and a one-line hint.

This is the single description of a profile. The validator (validate.py), the engine, the CLI and the
TUI's form all read it; nothing else keeps a second list of fields. Defaults are chosen for one 24 GB
GPU (an RTX 3090/4090) running QLoRA on a 7-8B model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def spec(default: Any, hint: str, *, kind: str | None = None, choices: tuple = (),
         min: float | None = None, max: float | None = None, path: bool = False,
         methods: tuple = ()) -> Any:
    """A dataclass field carrying what the validator and the form need to know about it.

    kind: "str", "int", "float", "bool", "choice", "str_or_list" (one string or a list of strings),
    "int_or_auto" (a positive integer or the string "auto"), "table" (a mapping of names to strings, such as
    data.columns). Inferred from the default when omitted.
    path: relative values are resolved against the profile file's folder.
    methods: the method types the field applies to (empty = all). Setting it for another method is an
    error, and files written by tunetop leave it out.
    """
    if kind is None:
        kind = ("choice" if choices else "bool" if isinstance(default, bool) else
                "int" if isinstance(default, int) else "float" if isinstance(default, float) else "str")
    meta = {"hint": hint, "kind": kind, "choices": choices, "min": min, "max": max, "path": path,
            "methods": methods}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# numpy's seeds are 32-bit (transformers' set_seed seeds numpy, torch and random alike).
SEED_MAX = 2**32 - 1
METHODS = ("qlora", "lora", "full")
LORA = ("qlora", "lora")
QLORA = ("qlora",)
DATA_FORMATS = ("auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
OPTIMIZERS = ("paged_adamw_8bit", "adamw_8bit", "paged_adamw_32bit", "adamw_torch", "adamw_torch_fused",
              "adafactor", "sgd")
# The optimizers that are bitsandbytes' (8-bit or paged state): they need it installed, and FSDP cannot shard them.
BITSANDBYTES_OPTIMIZERS = ("paged_adamw_8bit", "adamw_8bit", "paged_adamw_32bit")


@dataclass
class ModelSection:
    name_or_path: str = spec("", "Local model folder (relative to this file) or a Hugging Face hub id", path=True)
    revision: str = spec("main", "Hub revision (branch, tag or commit) when the model comes from the hub")
    trust_remote_code: bool = spec(False, "Run the model repository's own Python code (only for repos you trust)")


@dataclass
class DataSection:
    path: str | list = spec("", "Dataset file(s) (.json .jsonl .csv .parquet), a folder of .txt, or a hub "
                                "dataset name", kind="str_or_list", path=True)
    format: str = spec("auto", "Row format; auto detects it from the columns", choices=DATA_FORMATS)
    split: str = spec("train", "Split to train on (hub datasets)")
    eval_split: str = spec("", "Split to evaluate on (hub datasets); empty = none, or use eval_fraction")
    eval_fraction: float = spec(0.0, "Share of the training rows held out for evaluation (0 = none)",
                                min=0.0, max=0.5)
    max_samples: int = spec(0, "Use at most this many training rows (0 = all)", min=0)
    seed: int = spec(42, "Seed for shuffling and the eval hold-out", min=0, max=SEED_MAX)
    columns: dict = spec({}, "Your column names for a format's, e.g. { prompt = \"question\", completion = "
                             "\"answer\" } (README: Data formats)", kind="table")
    max_bad_fraction: float = spec(0.10, "Stop before training when more than this share of rows is unusable "
                                         "(bad rows, rows the chat template rejects)", min=0.0, max=1.0)
    reasoning: str = spec("keep", "Reasoning in replies (<think> blocks, reasoning_content): keep = trained with "
                                  "the reply; drop = removed, only the final answer is trained",
                          choices=("keep", "drop"))


@dataclass
class MethodSection:
    type: str = spec("qlora", "qlora: 4-bit base + LoRA; lora: 16-bit base + LoRA; full: train every weight",
                     choices=METHODS)
    lora_r: int = spec(16, "LoRA rank: adapter capacity (8-64 is usual)", min=1, max=4096, methods=LORA)
    lora_alpha: int = spec(32, "LoRA scaling numerator (often 2 x r)", min=1, max=2 * 4096, methods=LORA)
    lora_dropout: float = spec(0.05, "Dropout on the adapter input", min=0.0, max=0.9, methods=LORA)
    target_modules: str | list = spec("all-linear", "Layers that get adapters: all-linear or a list such as "
                                                    "[\"q_proj\", \"v_proj\"]", kind="str_or_list", methods=LORA)
    use_dora: bool = spec(False, "Weight-decomposed LoRA (DoRA): slower, sometimes better", methods=LORA)
    use_rslora: bool = spec(False, "Rank-stabilised LoRA scaling (alpha / sqrt(r))", methods=LORA)
    quant_type: str = spec("nf4", "4-bit data type for QLoRA", choices=("nf4", "fp4"), methods=QLORA)
    double_quant: bool = spec(True, "Quantise the quantisation constants too (saves ~0.4 bit/param)",
                              methods=QLORA)
    compute_dtype: str = spec("auto", "Dtype the 4-bit layers compute in", choices=PRECISIONS, methods=QLORA)


@dataclass
class TrainingSection:
    epochs: float = spec(1.0, "Passes over the training data (ignored when max_steps > 0)", min=0.0, max=10_000.0)
    max_steps: int = spec(0, "Optimizer steps to run; 0 = derive from epochs", min=0)
    micro_batch: int | str = spec(4, "Rows per forward/backward pass per GPU (or \"auto\")", kind="int_or_auto",
                                  min=1, max=4096)
    grad_accum: int = spec(4, "Micro-batches per optimizer step (effective batch = micro_batch x this x GPUs)",
                           min=1, max=4096)
    effective_batch: int = spec(0, "Rows per optimizer step per GPU kept by micro_batch = \"auto\" "
                                   "(0 = 4 x grad_accum); ignored when micro_batch is a number", min=0, max=1_048_576)
    allow_shorter_seq_len: bool = spec(False, "On out-of-memory, after splitting the micro-batch and gradient "
                                              "checkpointing, halve max_seq_len (rows get cut)")
    grow_back_after: int = spec(0, "After an out-of-memory backoff, try the larger micro-batch again after this "
                                   "many clean steps (0 = never)", min=0)
    learning_rate: float = spec(2e-4, "Peak learning rate", min=0.0, max=1.0)
    scheduler: str = spec("cosine", "Learning-rate schedule after warmup", choices=SCHEDULERS)
    warmup_ratio: float = spec(0.03, "Share of the steps spent warming up the learning rate", min=0.0, max=1.0)
    weight_decay: float = spec(0.0, "AdamW weight decay", min=0.0, max=1.0)
    max_grad_norm: float = spec(1.0, "Clip gradients to this norm (0 = no clipping)", min=0.0)
    max_seq_len: int = spec(2048, "Tokens per row; longer rows are truncated", min=8, max=1_048_576)
    packing: bool = spec(False, "Pack several short rows into each sequence")
    completion_only_loss: bool = spec(True, "Learn only the answers (assistant turns), not the prompts")
    gradient_checkpointing: bool = spec(True, "Recompute activations in backward: much less memory, ~30% slower")
    optimizer: str = spec("paged_adamw_8bit", "Optimizer (8-bit states save memory)", choices=OPTIMIZERS)
    seed: int = spec(42, "Seed for initialisation and data order", min=0, max=SEED_MAX)
    precision: str = spec("auto", "auto: bf16 where supported, else fp16 on GPU, fp32 on CPU", choices=PRECISIONS)
    logging_steps: int = spec(1, "Write a step event every N optimizer steps", min=1)
    eval_steps: int = spec(0, "Evaluate every N steps (0 = only at the end when there is eval data)", min=0)
    save_steps: int = spec(100, "Save a resumable checkpoint every N steps", min=1)
    save_total_limit: int = spec(3, "Checkpoints to keep (oldest are deleted)", min=1)
    on_nan: str = spec("stop", "A NaN or infinite loss: stop (checkpoint of the last good step, run failed) or "
                               "warn (notify and train on)", choices=("stop", "warn"))


@dataclass
class OutputSection:
    runs_root: str = spec("", "Folder for run directories (empty = $TUNETOP_HOME/runs)", path=True)
    merge: bool = spec(False, "Also save the base model with the adapter merged in (safetensors)")


@dataclass
class NotifySection:
    # Overrides the user's config.toml [notify] for runs of this profile. The URLs are secrets and live in
    # config.toml only (run.toml is a copy of the profile); engine/userconfig.py says more.
    enabled: bool = spec(True, "Send notifications for runs of this profile (config.toml says where)")
    on: str | list = spec("", "Events to notify on (empty = config.toml's): completed, failed, stopped, backoff, "
                              "nan, stalled, eval_rising", kind="str_or_list")
    command: str | list = spec("", "Command hook for this profile (empty = config.toml's): program and arguments",
                               kind="str_or_list")
    eval_rising: int = spec(0, "Notify after the eval loss rose this many evaluations in a row (0 = config.toml's)",
                            min=0)


STRATEGIES = ("auto", "ddp", "fsdp", "model_parallel")


@dataclass
class DistributedSection:
    # Several GPUs or machines through torchrun; engine/distributed/ resolves and checks the layout.
    gpus: str = spec("", "GPUs to train on: \"0,1\", \"all\", or empty for one device (CUDA_VISIBLE_DEVICES "
                         "comes from this)")
    strategy: str = spec("auto", "auto: ddp when the model fits one GPU, else fsdp (or model_parallel for qlora); "
                                 "ddp: a full copy per GPU; fsdp: weights, grads and optimizer sharded; "
                                 "model_parallel: one process, layers split across the GPUs", choices=STRATEGIES)
    processes: int | str = spec("auto", "Processes per machine (auto = one per GPU in gpus, or 1); on a machine "
                                        "without GPUs, N CPU processes (gloo)", kind="int_or_auto", min=1, max=1024)
    nnodes: int = spec(1, "Machines taking part; each runs the same `tunetop run` with its own node_rank",
                       min=1, max=4096)
    node_rank: int = spec(0, "This machine's place among nnodes (0 holds the run directory)", min=0)
    rdzv_endpoint: str = spec("", "HOST:PORT of machine 0, which every machine can reach (needed when nnodes > 1)")


SECTIONS: dict[str, type] = {
    "model": ModelSection,
    "data": DataSection,
    "method": MethodSection,
    "training": TrainingSection,
    "output": OutputSection,
    "distributed": DistributedSection,
    "notify": NotifySection,
}
# Top-level keys that are not sections. `name` overrides the file name (run.toml keeps the profile's name).
TOP_LEVEL = {"name": "", "description": ""}


@dataclass
class Profile:
    name: str = "untitled"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    method: MethodSection = field(default_factory=MethodSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    output: OutputSection = field(default_factory=OutputSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    notify: NotifySection = field(default_factory=NotifySection)
    # The file it came from (None for a profile built in memory); not written back.
    source: str | None = None

    @property
    def world_size(self) -> int | None:
        """Training processes over every machine, as far as the profile alone says (None for gpus = "all"
        with processes = "auto": known once the GPUs are counted, engine/distributed/layout.py)."""
        d = self.distributed
        if isinstance(d.processes, int):
            per_node = d.processes
        elif d.strategy == "model_parallel" or not d.gpus.strip():
            per_node = 1
        elif d.gpus.strip() == "all":
            return None
        else:
            per_node = len([g for g in d.gpus.split(",") if g.strip()])
        return per_node * d.nnodes

    @property
    def effective_batch(self) -> int | None:
        """Rows per optimizer step over all processes: micro_batch x grad_accum x world size."""
        mb, world = self.training.micro_batch, self.world_size
        return mb * self.training.grad_accum * world if isinstance(mb, int) and world else None

    def to_dict(self) -> dict:
        """The TOML-ready mapping (sections only, plus description)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        for name in SECTIONS:
            section = getattr(self, name)
            out[name] = {f.name: getattr(section, f.name) for f in fields(section)
                         if applies(f, self.method.type)}
        return out


def applies(f, method: str) -> bool:
    """Whether a field means anything for this method (LoRA settings do nothing in a full fine-tune)."""
    return not f.metadata.get("methods") or method in f.metadata["methods"]


def section_fields(section: str):
    """The dataclass fields of one section, in display order (what the form iterates)."""
    return fields(SECTIONS[section])
