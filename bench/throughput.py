"""Training throughput and quality: our loop (as run.py uses it) against adapters.AdapterTrainer
and HF Trainer; evaluation throughput.

Same model (me5-small by default), same real English data, same seeds, same number of examples:
  ours       the project's Trainer on a DeepSpeed engine with the demo experiment's settings:
             packed sequences (no compute on padding), random batches (no length grouping),
             eager attention on the CPU, bf16 autocast, dropout 0 on the frozen encoder
  A          AdapterTrainer as a user writes it by default: padding to 128 tokens, fp32, batch 16
  B          a tuned user: AdapterTrainer + DataCollatorWithPadding + group_by_length + bf16, batch 16
  ours-full  full fine-tuning through our DeepSpeed path (mode=full, dropout 0.1, ZeRO-2 config)
  hf-full    full fine-tuning with a plain HF Trainer (AutoModelForSequenceClassification, dynamic
             padding, bf16, fused AdamW, dropout 0.1)
Every run is a separate process, so its peak RSS is its own. Prints one table and, last, the
ratios ours/A and ours/B (the lower over the datasets) and ours-full/hf-full.

  python bench/throughput.py                      # speed mode: 800 examples, 2 repeats (~15 min)
  python bench/throughput.py --mode quality       # 8,000 examples, 3 seeds, ours/A/B (about an hour)
  python bench/throughput.py --mode eval          # zero-shot scoring examples/s; Tatoeba, every offline language
  python bench/throughput.py --mode cell          # a scaling-study cell phase by phase, sharing on/off (cell.py)
  python bench/throughput.py --model PATH --examples 64 --datasets sst2   # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
import cell  # noqa: E402  (bench/cell.py, beside this file)

SETUPS = ("ours", "A", "B", "ours-full", "hf-full")
ADAPTER_SETUPS, FULL_SETUPS = SETUPS[:3], SETUPS[3:]
FULL_LR = 2e-5
LR, BATCH, MAX_LEN = 1e-3, 16, 128


def _data(dataset: str, examples: int, seed: int, dev_size: int):
    from adapter_stilts.config import DataConfig
    from adapter_stilts.tasks.data import resolve_source, subset
    from adapter_stilts.tasks.lookup import get_task

    source = resolve_source(DataConfig())
    if source.kind != "local":
        raise SystemExit(f"the benchmark needs the real data folder ({DataConfig().local_dir})")
    task = get_task(dataset)
    train = subset(task.load_local(source.root, "train", "en"), examples, seed)
    dev = subset(task.load_local(source.root, "dev", "en"), dev_size, 0)
    return task, train, dev


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def run_ours(model_path: str, task, train, dev, seed: int, overrides: list[str], full: bool = False) -> dict:
    from adapter_stilts import distributed as dist
    from adapter_stilts.config import TaskSettings, load_experiment
    from adapter_stilts.models.loading import load_tokenizer
    from adapter_stilts.models.phase_models import trainable_model
    from adapter_stilts.tasks.families import family_of
    from adapter_stilts.tracking import RunHandle
    from adapter_stilts.training.engine import load_ds_config
    from adapter_stilts.training.loop import TaskStream, Trainer

    dist.init()
    full_settings = ["mode=full", f"training.lr={FULL_LR}", "model.dropout=0.1"] if full else []
    cfg = load_experiment("demo", [f"seed={seed}", f"training.batch_size={BATCH}", f"training.lr={LR}",
                                   "training.checkpoint_every=0", "model.classifier_pooling=cls",
                                   f"model.max_length={MAX_LEN}", *full_settings, *overrides])
    tok, fam = load_tokenizer(model_path), family_of(task)
    from adapter_stilts.pipeline import seed_everything

    seed_everything(seed)
    model = trainable_model(model_path, cfg.mode, task, cfg)
    feats = fam.featurize(task, train, tok, MAX_LEN)
    dev_feats = fam.featurize(task, dev, tok, MAX_LEN)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, [TaskStream(task, feats, dev_feats, dev)], cfg, TaskSettings(),
                          load_ds_config(cfg.training.deepspeed), Path(out) / task.name, RunHandle(), tok.pad_token_id)
        outcome = trainer.fit()
    real = sum(len(f["input_ids"]) for f in feats[: outcome.steps * BATCH])
    dist.shutdown()
    return {"examples_per_s": outcome.examples_per_s, "tokens_per_s": real / outcome.wall_s, "dev": outcome.best_dev}


def run_hf_trainer(model_path: str, task, train, dev, seed: int, setup: str) -> dict:
    """A (AdapterTrainer, padding to 128, fp32), B (AdapterTrainer, dynamic padding, length
    grouping, bf16) or hf-full (plain HF Trainer full fine-tuning: dynamic padding, bf16, fused
    AdamW), each with the model's own dropout (0.1), as a user gets it."""
    import numpy as np
    import torch
    from adapters import AdapterTrainer, AutoAdapterModel
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    fixed, full = setup == "A", setup == "hf-full"
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    labels = {lab: i for i, lab in enumerate(task.labels)}

    def encode(examples):
        pairs = [e.get("text_b") for e in examples]
        enc = tok([e["text_a"] for e in examples], pairs if pairs[0] is not None else None, truncation=True,
                  max_length=MAX_LEN, padding="max_length" if fixed else False)
        return Dataset.from_dict({**enc, "labels": [labels[e["label"]] for e in examples]})

    train_ds, dev_ds = encode(train), encode(dev)
    if full:
        model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=len(task.labels))
    else:
        model = AutoAdapterModel.from_pretrained(model_path)
        model.add_adapter(task.name, config="seq_bn")
        model.add_classification_head(task.name, num_labels=len(task.labels))
        model.train_adapter(task.name)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, per_device_eval_batch_size=64,
                                 learning_rate=FULL_LR if full else LR, num_train_epochs=1, seed=seed, use_cpu=True,
                                 report_to=[], save_strategy="no", logging_steps=10 ** 6, group_by_length=setup == "B",
                                 bf16=not fixed, optim="adamw_torch_fused", disable_tqdm=True)
        collator = default_data_collator if fixed else DataCollatorWithPadding(tok)
        trainer = (Trainer if full else AdapterTrainer)(model=model, args=args, train_dataset=train_ds,
                                                        data_collator=collator)
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
        logits = trainer.predict(dev_ds).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    dev_acc = float(np.mean(np.argmax(logits, -1) == np.array(dev_ds["labels"])))
    steps = len(train) // BATCH
    real = sum(int(sum(m)) for m in train_ds["attention_mask"][: steps * BATCH])
    return {"examples_per_s": steps * BATCH / wall, "tokens_per_s": real / wall, "dev": dev_acc}


def worker(args) -> None:
    from adapter_stilts.models.loading import resolve_model

    model_path = resolve_model(args.model)
    task, train, dev = _data(args.dataset, args.examples, args.seed, args.dev_size)
    if args.worker in ("ours", "ours-full"):
        result = run_ours(model_path, task, train, dev, args.seed, args.ours_set, full=args.worker == "ours-full")
    else:
        result = run_hf_trainer(model_path, task, train, dev, args.seed, args.worker)
    result["peak_rss_gb"] = _peak_rss_gb()
    print("RESULT " + json.dumps(result), flush=True)


def launch(setup: str, dataset: str, seed: int, examples: int, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", setup, "--dataset", dataset, "--seed", str(seed),
           "--examples", str(examples), "--dev-size", str(args.dev_size), "--model", args.model,
           *[f"--ours-set={o}" for o in args.ours_set]]
    from adapter_stilts.distributed import LAUNCHER_ENV

    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{setup} on {dataset} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run_eval(model_path: str, languages: int, test_size: int) -> None:
    """Zero-shot scoring throughput (XNLI test, the demo's phase-3 model shape) and Tatoeba over
    every offline language (the raw encoder, layer 12, mean pooling: the demo's retrieval)."""
    import numpy as np

    from adapter_stilts.config import DataConfig, load_experiment
    from adapter_stilts.evaluation.retrieval import retrieval_eval
    from adapter_stilts.evaluation.zero_shot import zero_shot_eval
    from adapter_stilts.models.loading import build_model, load_tokenizer
    from adapter_stilts.models.phase_models import trainable_model
    from adapter_stilts.tasks.data import resolve_source, subset
    from adapter_stilts.tasks.families import family_of
    from adapter_stilts.tasks.lookup import get_task

    cfg = load_experiment("demo", [])
    source, tok = resolve_source(DataConfig()), load_tokenizer(model_path)
    xnli = get_task("xnli")
    langs = sorted(xnli.local_languages(source.root))[: languages or None]
    tests = {}
    for lang in langs:
        examples = subset(xnli.load_local(source.root, "test", lang), test_size, 0)
        tests[lang] = (family_of(xnli).featurize(xnli, examples, tok, cfg.model.max_length), examples)
    model = trainable_model(model_path, "adapters", xnli, cfg)
    n = sum(len(f) for f, _ in tests.values())
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        zero_shot_eval(model, xnli, tests, tok.pad_token_id, cfg.training.bf16, Path(out))
        wall = time.perf_counter() - t0
    print(f"zero-shot scoring (XNLI test, {len(tests)} languages, {n} examples, adapter stack + head, bf16): "
          f"{n / wall:.1f} examples/s ({wall:.1f} s)", flush=True)
    _fusion_scoring(model, xnli, dict(list(tests.items())[:2]), cfg, tok.pad_token_id)

    tatoeba = get_task("tatoeba")
    tatoeba_langs = sorted(tatoeba.local_languages(source.root))
    pairs = {lang: tatoeba.load_local(source.root, "test", lang) for lang in tatoeba_langs[: languages or None]}
    sentences = sum(2 * len(p) for p in pairs.values())
    distinct = len({x for p in pairs.values() for e in p for x in (e["source"], e["target"])})
    encoder = build_model(model_path, 0.0)
    layer = min(cfg.retrieval.layer, encoder.config.num_hidden_layers)  # a tiny test model has fewer layers
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        results = retrieval_eval(encoder, tok, tatoeba, pairs, {}, layer, cfg.retrieval.pooling, 128,
                                 cfg.model.max_length, cfg.training.bf16, Path(out))
        wall = time.perf_counter() - t0
    acc = np.mean([r["accuracy"] for r in results.values()])
    print(f"Tatoeba, {'all ' if len(pairs) == len(tatoeba_langs) else ''}{len(pairs)} offline languages "
          f"({sentences} sentences, {distinct} distinct, layer "
          f"{layer}, batch 128, bf16): {wall:.0f} s wall, {distinct / wall:.0f} distinct sentences/s, "
          f"mean acc@1 {acc:.3f}; peak RSS {_peak_rss_gb():.2f} GB", flush=True)


def _fusion_scoring(model, xnli, tests: dict, cfg, pad_id: int, members: int = 7) -> None:
    """AdapterFusion over `members` adapters (fusion9's offline shape), scored as adapters hands the
    fusion layers their inputs (a permuted stack) and as we do (contiguous_fusion_inputs)."""
    from adapters.composition import Fuse

    from adapter_stilts.evaluation.zero_shot import zero_shot_eval
    from adapter_stilts.models.loading import adapter_config
    from adapter_stilts.models.phase_models import contiguous_fusion_inputs

    names = [f"member{i}" for i in range(members)]
    for name in names:
        model.add_adapter(name, config=adapter_config(cfg.adapter))
    model.add_adapter_fusion(Fuse(*names))
    model.active_adapters = Fuse(*names)
    n, walls = sum(len(f) for f, _ in tests.values()), {}
    permuted, contiguous = "adapters' permuted stack", "contiguous (ours)"
    for setup in (permuted, contiguous):
        if setup == contiguous:
            contiguous_fusion_inputs(model)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            zero_shot_eval(model, xnli, tests, pad_id, cfg.training.bf16, Path(out))
            walls[setup] = time.perf_counter() - t0
        print(f"zero-shot scoring, AdapterFusion over {members} adapters, {setup} (XNLI test, {len(tests)} "
              f"languages, {n} examples, bf16): {n / walls[setup]:.1f} examples/s ({walls[setup]:.1f} s)", flush=True)
    print(f"fusion scoring speed, contiguous/permuted: {walls[permuted] / walls[contiguous]:.2f}x", flush=True)


def _names(text: str) -> list[str]:
    return [t for t in text.split(",") if t]


def _summary(name: str, results: list[dict]) -> str:
    ex = [r["examples_per_s"] for r in results]
    return (f"{name} examples/s {statistics.mean(ex):7.1f} (runs: {', '.join(f'{x:.1f}' for x in ex)})"
            f" | real tokens/s {statistics.mean(r['tokens_per_s'] for r in results):7.0f}"
            f" | peak RSS {max(r['peak_rss_gb'] for r in results):.2f} GB"
            f" | dev {statistics.mean(r['dev'] for r in results):.4f}"
            f" (+-{statistics.pstdev([r['dev'] for r in results]):.4f})")


def _ratio(table: dict, datasets: list[str], ours: str, ref: str) -> str:
    ratios = {d: statistics.mean(r["examples_per_s"] for r in table[d, ours]) /
              statistics.mean(r["examples_per_s"] for r in table[d, ref]) for d in datasets if (d, ref) in table}
    return (f"{ours}/{ref} training speed: {min(ratios.values()):.2f}x (lowest; "
            + ", ".join(f"{d} {v:.2f}x" for d, v in ratios.items()) + ")")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("speed", "quality", "eval", "cell"), default="speed")
    p.add_argument("--datasets", default="sst2,mnli")
    p.add_argument("--setups", default="",
                   help="comma-separated (speed: all five, full fine-tuning on the first dataset only; "
                        "quality: ours,A,B)")
    p.add_argument("--examples", type=int, default=0, help="training examples (speed 800, quality 8000)")
    p.add_argument("--full-examples", type=int, default=400, help="training examples of the full fine-tuning runs")
    p.add_argument("--seeds", type=int, default=0, help="runs per setup (speed: 2 repeats, quality: 3 seeds)")
    p.add_argument("--dev-size", type=int, default=872)
    p.add_argument("--eval-languages", type=int, default=0,
                   help="eval mode: the first N XNLI and Tatoeba languages (0 = every offline language)")
    p.add_argument("--eval-size", type=int, default=500, help="eval mode: XNLI test examples per language")
    p.add_argument("--model", default="me5-small")
    p.add_argument("--ours-set", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment override for our loop, e.g. --ours-set training.bf16=false")
    p.add_argument("--study", default="scaling", help="cell mode: the study file")
    p.add_argument("--cell", default="", help="cell mode: a cell id (default: the first k=1 cell)")
    p.add_argument("--add-targets", default="", help="cell mode: comma-separated targets added to the study's")
    p.add_argument("--profile", action="store_true", help="cell mode: also profile the shared cell with py-spy")
    p.add_argument("--profile-out", default="outputs/bench/cell-profile.txt", help="cell mode: py-spy's raw stacks")
    p.add_argument("--cell-worker", choices=("shared", "unshared"), help=argparse.SUPPRESS)
    p.add_argument("--cell-out", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=SETUPS, help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.cell_worker:
        return cell.worker(args.study, args.cell, _names(args.add_targets), args.cell_worker == "shared", args.cell_out)
    if args.mode == "cell":  # the study file names the model
        return cell.main(args)
    print(f"{time.strftime('%Y-%m-%d')} | {args.mode} mode | {args.model} | {os.cpu_count()} CPU cores", flush=True)
    if args.mode == "eval":
        from adapter_stilts.models.loading import resolve_model

        return run_eval(resolve_model(args.model), args.eval_languages, args.eval_size)
    args.examples = args.examples or (800 if args.mode == "speed" else 8000)
    runs = args.seeds or (2 if args.mode == "speed" else 3)
    setups = args.setups.split(",") if args.setups else list(SETUPS if args.mode == "speed" else ADAPTER_SETUPS)
    datasets = args.datasets.split(",")
    print(f"{args.examples} training examples (full fine-tuning: {args.full_examples}) | batch {BATCH}, lr {LR} "
          f"(full: {FULL_LR}) | {runs} run(s) per setup", flush=True)
    table = {}
    for dataset in datasets:
        for setup in setups:
            if setup in FULL_SETUPS and dataset != datasets[0]:
                continue
            examples = args.full_examples if setup in FULL_SETUPS else args.examples
            # speed mode repeats one seed (machine noise); quality mode uses a different seed per run
            results = [launch(setup, dataset, 1 + (i if args.mode == "quality" else 0), examples, args)
                       for i in range(runs)]
            table[dataset, setup] = results
            print(_summary(f"{dataset:5} {setup:9}", results), flush=True)
    for ours, ref in (("ours", "A"), ("ours", "B"), ("ours-full", "hf-full")):
        if ours in setups and ref in setups:
            print(_ratio(table, datasets, ours, ref))


if __name__ == "__main__":
    main()
