"""Task fine-tune: supervised input -> output training with transformers' Trainer, full or LoRA.

The prompt format used here is stored in the output's `tasc.json`, so generation, evaluation and
benchmarks render prompts exactly as the model was trained on them. The loss covers the answer
tokens only (prompt positions are labelled -100), and answers are tokenised on their own, the way
decoding produces them (see `tasc.core.prompts`).

A run is a job: progress events (step, loss, learning rate, ETA) go to `on_progress`, a
`threading.Event` cancels it after the current step with a checkpoint saved, checkpoints are
written every `save_every_s` seconds (and every `save_every` steps when set) under `OUT/checkpoints`, and `resume=True` continues a killed or
cancelled run from its last checkpoint. The result is a plain model directory (safetensors; a LoRA
run is merged) that `AutoModelForCausalLM.from_pretrained` loads without TASC.
Speed: matmuls run in bf16 autocast where the device has bf16 instructions (GPUs; AVX512-BF16/AMX CPUs), and
the output head only where the loss needs it (`answer_loss`): a 2-core CPU step costs 1.4 s instead of 3.1 s.
Multi-GPU: `accelerate launch -m tasc finetune ...` runs this same code data-parallel.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence, TypedDict, Unpack

from tasc.core.corpus import Corpus
from tasc.core.errors import Cancelled, CorpusError
from tasc.core.models import save_model_dir
from tasc.core.progress import Progress, ProgressFn
from tasc.core.prompts import PromptFormat, answer_ids
from tasc.core.run_dir import RunDir, TrainOptions, TrainRun

IGNORE = -100  # label of positions that carry no loss (the prompt, padding)
PRECISIONS = ("auto", "fp32")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class FinetuneConfig:
    """How to fine-tune."""

    steps: int = 200  # optimiser steps (the corpus is repeated as needed)
    batch_size: int = 8  # examples per step (per device)
    learning_rate: float | None = None  # None: 2e-4 for a full fine-tune, 1e-3 for LoRA
    lora: bool = False  # train LoRA adapters (merged at the end) instead of all weights
    lora_rank: int = 16  # LoRA rank r (alpha = 2r)
    save_every: int | None = None  # also checkpoint every N steps (None: by time only)
    # Checkpoint once this many seconds passed since the last one (and on stop): a GPU runs a step in
    # a fraction of a second, so a step interval would write the model and optimizer every few seconds.
    save_every_s: float = 60.0
    log_every: int = 5  # loss reporting interval in steps (the live loss curve's resolution)
    max_length: int = 256  # prompt + answer tokens; longer examples are cut at the end
    warmup_ratio: float = 0.05  # share of steps with a linearly rising learning rate
    seed: int = 0  # data order and initialisation
    keep_checkpoints: bool = False  # keep OUT/checkpoints after a successful run
    # Data-to-text (E2E-style attribute inputs): train only on references that state every attribute and
    # invent none (`tasc.core.faithfulness.faithful_rows`): a third of E2E's do not, and models learn that.
    faithful_only: bool = False
    # Data-to-text: add copies of faithful rows with one attribute taken out of input and reference
    # (`tasc.ft.augment`), so attributes a small corpus always pairs (coffee shop + food) come apart.
    attribute_dropout: bool = False
    # Data-to-text: give half the rows a new name made of the corpus's name words (`tasc.ft.augment`), so the
    # model learns to copy a name it never saw instead of the few it did.
    new_names: bool = False
    # A fine-tuned model whose greedy answers to the corpus's inputs are added to the training rows (before the
    # options above filter and augment them): sequence-level distillation, e.g. of the base fine-tune into TASC-ft.
    teacher: str | None = None
    teacher_inputs: int | None = None  # answer at most this many distinct inputs (None: all)
    # "auto": matmuls in bf16 autocast (fp32 master weights) where the device computes bf16 natively
    # (`tasc.core.models.trains_in_bf16`: half the step time on an AVX512-BF16 CPU); "fp32": never.
    precision: str = "auto"

    @property
    def lr(self) -> float:
        """The learning rate in effect."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1e-3 if self.lora else 2e-4

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("steps", "batch_size", "log_every", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.teacher_inputs is not None and self.teacher_inputs < 1:
            raise ValueError(f"teacher_inputs must be at least 1 (or None: all), got {self.teacher_inputs}")
        if self.save_every is not None and self.save_every < 1:
            raise ValueError(f"save_every must be at least 1 (or None: by time only), got {self.save_every}")
        if not self.save_every_s > 0:
            raise ValueError(f"save_every_s must be a positive number of seconds, got {self.save_every_s}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, got {self.max_length}")
        if not self.lr > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def bf16_on(self, device: str) -> bool:
        """Whether a run on `device` trains in bf16 autocast."""
        from tasc.core.models import trains_in_bf16

        return self.precision == "auto" and trains_in_bf16(device)


class DataToTextOptions(TypedDict):
    """The FinetuneConfig switches of the data-to-text recipe."""

    faithful_only: bool
    attribute_dropout: bool
    new_names: bool


def data_to_text_options(corpus: Corpus) -> DataToTextOptions:
    """The FinetuneConfig switches the app's recipes set for `corpus`: for data-to-text from E2E-style attribute
    lists, faithful rows only, attribute dropout and new names (fewer invented and dropped attributes and
    copied unseen names, measured on unseen names: README, issue 21); for any other task, none."""
    from tasc.core.faithfulness import is_attribute_task

    on = corpus.inputs is not None and is_attribute_task(corpus.inputs)
    return DataToTextOptions(faithful_only=on, attribute_dropout=on, new_names=on)


@dataclass
class Example:
    """One training example: token ids and labels (-100 on the prompt)."""

    input_ids: list[int]
    labels: list[int]


def build_examples(
    tokenizer: Any, prompt_format: PromptFormat, pairs: Sequence[tuple[str, str]], max_length: int
) -> tuple[list[Example], int]:
    """Tokenise (input, output) pairs into examples; returns them and how many were cut to fit."""
    examples, cut = [], 0
    for task_input, output in pairs:
        prompt = prompt_format.prompt_ids(tokenizer, task_input)
        answer = answer_ids(tokenizer, output)
        ids = prompt + answer
        labels = [IGNORE] * len(prompt) + answer
        if len(ids) > max_length:
            cut += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if any(label != IGNORE for label in labels):  # a prompt longer than max_length teaches nothing
            examples.append(Example(ids, labels))
    return examples, cut


@dataclass
class PadCollator:
    """Right-pads a batch of `Example`-like dicts to its longest member; `logits_to_keep` names the positions
    whose logits the loss needs (`answer_loss`)."""

    pad_id: int

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        """Stack features into input_ids, attention_mask and labels tensors of shape (B, T), and logits_to_keep (K,)."""
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)  # (B, T)
        mask = torch.zeros((len(features), width), dtype=torch.long)  # (B, T)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        answer = (labels[:, 1:] != IGNORE).any(dim=0).nonzero()  # positions t whose logits predict an answer token
        first = int(answer[0]) if len(answer) else width - 2
        # The output head (vocabulary x hidden, a fifth of a 135M model's compute) runs only from the batch's first
        # answer position on: half of a SNIPS row is prompt, and this made a step 13% faster.
        keep = torch.arange(max(first, 0), width - 1)  # (K,)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits_to_keep": keep}


def answer_loss(outputs: Any, labels: Any, num_items_in_batch: Any = None) -> Any:
    """Cross-entropy of the answer tokens from logits kept at the last K positions (`PadCollator`'s `logits_to_keep`).

    transformers' Trainer calls this as its `compute_loss_func`, so its own scaling (gradient accumulation, tokens
    averaged across devices) applies unchanged.
    """
    import torch.nn.functional as F

    logits = outputs.logits  # (B, K, V): positions T-1-K .. T-2, each predicting the next token
    targets = labels[:, labels.shape[1] - logits.shape[1]:]  # (B, K)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE).sum().clamp(min=1)
    return loss / count


def _complete(checkpoint: Path) -> bool:
    """True when a checkpoint was fully written: Trainer writes trainer_state.json last."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` folder of a run (a run killed mid-save leaves a partial one), or None."""
    return RunDir(out_dir).latest_checkpoint(_complete)


def _progress_callback(total: int, on_progress: ProgressFn | None, cancel: threading.Event | None, losses: list, t0: float,
                       start_step: list, save_every_s: float = float("inf")):
    """A TrainerCallback that reports progress, records losses, checkpoints every `save_every_s` seconds and
    stops (with a checkpoint) on cancel."""
    from transformers import TrainerCallback

    class _Callback(TrainerCallback):
        def __init__(self) -> None:
            self.latest: dict[str, float] = {}
            self.saved_at = time.perf_counter()

        def on_save(self, args, state, control, **kwargs):
            self.saved_at = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            start_step[0] = state.global_step  # > 0 when resuming

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append((state.global_step, float(logs["loss"])))
                self.latest = {"loss": float(logs["loss"]), "lr": float(logs.get("learning_rate", 0.0))}

        def on_step_end(self, args, state, control, **kwargs):
            if on_progress:
                # Counted from where this session started, so a resumed run's ETA uses its own pace.
                first = start_step[0]
                on_progress(Progress("finetune", state.global_step - first, total - first, time.perf_counter() - t0,
                                     {**self.latest, "step": state.global_step}, f"step {state.global_step}/{total}"))
            if time.perf_counter() - self.saved_at >= save_every_s and state.global_step < total:
                control.should_save = True  # the run's end needs none: the model itself is saved then
            if cancel is not None and cancel.is_set():  # after reporting, so a cancel from the report stops here
                control.should_training_stop = True
                control.should_save = True  # nothing lost: --resume continues from here

    return _Callback()


def _wrap_lora(model: Any, config: FinetuneConfig, meta: dict[str, Any]) -> Any:
    """LoRA adapters on every linear layer; the enriched vocabulary's new embedding rows stay trainable."""
    from peft import LoraConfig, get_peft_model

    extra: dict[str, Any] = {}
    enriched = meta.get("enriched") or {}
    base_vocab = enriched.get("base_vocab_size")
    if base_vocab is not None:
        new_rows = list(range(int(base_vocab), model.get_input_embeddings().weight.shape[0]))
        if new_rows:
            extra["trainable_token_indices"] = {"embed_tokens": new_rows}
            extra["ensure_weight_tying"] = bool(getattr(model.config, "tie_word_embeddings", False))
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=2 * config.lora_rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
        **extra,
    )
    return get_peft_model(model, lora)


TEACHER_ANSWERS = "teacher_answers.jsonl"  # under OUT/checkpoints: a killed run's resume keeps the answers


def _with_teacher_answers(run: TrainRun, teacher: str, corpus: Corpus, limit: int | None, *, fresh: bool) -> Corpus:
    """The corpus followed by one row per distinct input (the first `limit`) with the teacher's greedy answer
    (resumable)."""
    import gc

    from tasc.core.corpus import compute_stats
    from tasc.ft.distill import distill, read_answers

    inputs = list(dict.fromkeys(corpus.inputs or []))[:limit]
    path = run.checkpoints / TEACHER_ANSWERS
    if fresh:
        path.unlink(missing_ok=True)  # answers of an earlier, finished or abandoned run may be another teacher's
    lm = run.load(teacher)
    lm.model.eval()
    distill(lm, inputs, path, on_progress=run.on_progress, cancel=run.cancel)
    del lm
    gc.collect()
    answers = read_answers(path)
    outputs = corpus.outputs + [answers[i] for i in inputs if i in answers]
    new_inputs = (corpus.inputs or []) + [i for i in inputs if i in answers]
    return Corpus(outputs, new_inputs, f"{corpus.source} (+{len(new_inputs) - len(corpus)} answers of {teacher})",
                  compute_stats(outputs, new_inputs))


def _load_run_config(run: RunDir, config: FinetuneConfig, resume: bool) -> tuple[FinetuneConfig, Path | None]:
    """The config to use and the checkpoint to resume from (a resumed run keeps its stored config)."""
    latest = run.latest_checkpoint(_complete)
    config = run.start(config, resume, unfinished=latest is not None, keep=("steps",))  # --steps may extend a run
    return config, latest if resume else None


def _training_args(config: FinetuneConfig, run: RunDir, device: str) -> Any:
    """transformers TrainingArguments of a run: cosine schedule, checkpoints under OUT/checkpoints."""
    from transformers import TrainingArguments

    on_gpu = device.startswith("cuda")
    return TrainingArguments(
        output_dir=str(run.checkpoints),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=max(0, round(config.warmup_ratio * config.steps)),
        weight_decay=0.0,
        logging_steps=config.log_every,
        # By time (the progress callback asks for a save), plus every `save_every` steps when set.
        save_strategy="steps" if config.save_every else "no",
        save_steps=config.save_every or 1,
        save_total_limit=2,
        seed=config.seed,
        bf16=config.bf16_on(device),
        use_cpu=not on_gpu,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # Batches of similar lengths: right-padding to the longest row wasted ~27% of each SNIPS
        # step's compute (rows are 46-164 tokens), and a CPU step is compute-bound.
        train_sampling_strategy="group_by_length",
    )


def _train(train_model: Any, lm: Any, examples: list[Example], config: FinetuneConfig, run: RunDir, checkpoint: Path | None,
           on_progress: ProgressFn | None, cancel: threading.Event | None) -> tuple[dict[str, Any], list[tuple[int, float]]]:
    """Run transformers' Trainer (from `checkpoint` when resuming); the step and loss figures and the loss curve.

    Raises:
        Cancelled: `cancel` was set; a checkpoint of the last finished step was saved.
    """
    from transformers import Trainer

    pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else lm.eos_token_id
    losses: list[tuple[int, float]] = []
    start_step = [0]
    t0 = time.perf_counter()
    trainer = Trainer(
        model=train_model,
        args=_training_args(config, run, lm.device),
        train_dataset=[asdict(e) for e in examples],
        data_collator=PadCollator(pad_id),
        compute_loss_func=answer_loss,
        callbacks=[_progress_callback(config.steps, on_progress, cancel, losses, t0, start_step, config.save_every_s)],
    )
    run.write_settings(asdict(config))
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    wall = time.perf_counter() - t0
    steps_done = trainer.state.global_step
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"fine-tune stopped at step {steps_done}/{config.steps}; checkpoint saved, continue with --resume")
    figures = {
        "steps": steps_done,
        "resumed_from_step": start_step[0],
        "wall_s": round(wall, 1),
        "seconds_per_step": round(wall / max(steps_done - start_step[0], 1), 3),
        "samples_per_s": round((steps_done - start_step[0]) * config.batch_size / wall, 2) if wall else 0.0,
        "final_loss": round(sum(loss for _, loss in losses[-3:]) / len(losses[-3:]), 4) if losses else None,
        "bf16": config.bf16_on(lm.device),
    }
    return figures, losses


def _save_finetuned(final: Any, lm: Any, model: str, fmt: PromptFormat, figures: dict[str, Any], out_dir: Path) -> None:
    """Save the trained model with a tasc.json naming its base model, prompt format and run figures."""
    meta = {**lm.meta, "base_model": lm.meta.get("base_model", model), "prompt_format": fmt.to_dict(), "finetune": figures}
    meta.pop("source", None)  # described the GGUF conversion, not this model
    save_model_dir(final, lm.tokenizer, out_dir, meta)


def finetune(
    model: str,
    corpus: Corpus,
    out_dir: str | Path,
    config: FinetuneConfig | None = None,
    *,
    prompt_format: PromptFormat | None = None,
    **options: Unpack[TrainOptions],
) -> dict[str, Any]:
    """Fine-tune `model` on the corpus's (input, output) pairs and save it to `out_dir`.

    Args:
        model: alias, hub id or model directory (an enriched model directory from `tasc enrich` too).
        corpus: training rows; must have inputs.
        out_dir: where checkpoints and the final model go.
        config: training settings.
        options: `tasc.core.run_dir.TrainOptions`: device, resume, trust_remote_code, on_progress, cancel.
        prompt_format: format to train with; default: the model's stored one, else `PromptFormat()`.
    Returns:
        Figures of the run: steps, wall time, losses, device, paths.
    Raises:
        Cancelled: `cancel` was set; a checkpoint of the last finished step was saved.
    """
    import torch

    config = config or FinetuneConfig()
    config.check()
    if corpus.inputs is None:
        raise CorpusError(f"{corpus.source} has outputs only: fine-tuning needs input and output columns")
    run = TrainRun(out_dir, options)
    config, checkpoint = _load_run_config(run, config, run.resume)
    torch.manual_seed(config.seed)
    if config.teacher:
        corpus = _with_teacher_answers(run, config.teacher, corpus, config.teacher_inputs, fresh=not run.resume)
    if config.faithful_only:
        from tasc.core.faithfulness import faithful_rows

        corpus = faithful_rows(corpus)
    if config.attribute_dropout:
        from tasc.ft.augment import with_attribute_dropout

        corpus = with_attribute_dropout(corpus)
    if config.new_names:
        from tasc.ft.augment import with_new_names

        corpus = with_new_names(corpus, seed=config.seed)

    lm = run.load(model)
    fmt = (prompt_format or lm.prompt_format).resolved(lm.tokenizer)
    examples, cut = build_examples(lm.tokenizer, fmt, corpus.pairs(), config.max_length)
    if not examples:
        raise CorpusError(f"{corpus.source}: no example fits in max_length={config.max_length} tokens")
    train_model = _wrap_lora(lm.model, config, lm.meta) if config.lora else lm.model
    train_model.train()
    figures, losses = _train(train_model, lm, examples, config, run, checkpoint, run.on_progress, run.cancel)

    final = train_model.merge_and_unload() if config.lora else train_model
    final.eval()
    figures.update({"train_rows": len(examples), "truncated_rows": cut, "device": lm.device, "config": asdict(config),
                    "corpus": corpus.source, "from_model": model})
    _save_finetuned(final, lm, model, fmt, figures, run.out)
    run.clean_up(config.keep_checkpoints)
    return {"out_dir": str(run.out), **figures, "losses": losses}
