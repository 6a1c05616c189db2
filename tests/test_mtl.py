"""Multi-task fine-tuning on tiny fixtures written here: label alignment, every strategy
end to end, the frozen and gradual invariants, GradNorm in the loop, resume, and overfitting."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minibert.config import BertConfig
from minibert.finetuning_data import (LabelMap, encode_tagged, iob1_to_bio, read_conll, word_windows,
                                      words_from_predictions)
from minibert import loops
from minibert.safetensors import load_file
from minibert.tasks import builtin_tasks
from minibert.tokenizer import WordPieceTokenizer
from minibert.transformer_with_heads import TransformerWithHeads

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import train_mtl  # noqa: E402

TOPICS = {"cs.CL": "language parsing grammar words translation", "math.GT": "knot manifold surface braid topology",
          "q-bio.PE": "species population evolution fitness mutation"}
ENTITY_WORDS = {"Method": ["parser", "network"], "Task": ["translation", "tagging"], "Material": ["corpus", "treebank"]}
FILLER = "we use a the for on with and to".split()


def write_fixture(root, seed=0):
    rng = np.random.default_rng(seed)
    arxiv = root / "classification" / "arxiv10"
    arxiv.mkdir(parents=True)
    for split, n in (("train", 30), ("dev", 9), ("test", 9)):
        with open(arxiv / f"{split}.jsonl", "w") as f:
            for i in range(n):
                label = list(TOPICS)[i % 3]
                words = rng.choice(TOPICS[label].split() + FILLER, size=12)
                f.write(json.dumps({"title": " ".join(words[:4]), "abstract": " ".join(words), "label": label}) + "\n")
    conll = root / "ner" / "scierc" / "conll"
    conll.mkdir(parents=True)
    for split, n in (("train", 24), ("dev", 8), ("test", 8)):
        lines = ["-DOCSTART- NN O O", ""]
        for _ in range(n):
            for _ in range(int(rng.integers(4, 9))):
                if rng.random() < 0.35:
                    kind = str(rng.choice(list(ENTITY_WORDS)))
                    for word in rng.choice(ENTITY_WORDS[kind], size=int(rng.integers(1, 3))):
                        lines.append(f"{word} NN O I-{kind}")
                else:
                    lines.append(f"{rng.choice(FILLER)} NN O O")
            lines.append("")
        (conll / f"{split}.txt").write_text("\n".join(lines) + "\n")
    words = sorted({w for t in TOPICS.values() for w in t.split()} | set(FILLER)
                   | {w for ws in ENTITY_WORDS.values() for w in ws} | {"."})
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=128)  # train_mtl's default lengths
    torch.manual_seed(0)
    TransformerWithHeads(config).save_pretrained(root / "init")
    tokenizer.save_pretrained(root / "init")
    return root


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("mtl"))


def run(fixture_dir, run_dir, *extra):
    return train_mtl.main([f"--init={fixture_dir / 'init'}", f"--data_dir={fixture_dir}", f"--run_dir={run_dir}",
                           "--batch_size=4", "--max_steps=4", "--eval_every=2", "--checkpoint_every=2",
                           "--learning_rate=1e-3", "--unfreeze_every=2", "--threads=1", *extra])


def test_iob1_to_bio_and_conll_reading(tmp_path):
    assert iob1_to_bio(["O", "I-Task", "I-Task", "B-Task", "I-Method", "O", "I-Task"]) == \
        ["O", "B-Task", "I-Task", "B-Task", "B-Method", "O", "B-Task"]
    (tmp_path / "x.txt").write_text("-DOCSTART- NN O O\n\nA NN O I-Task\nb NN O O\n\nc NN O I-Method\n")
    assert read_conll(tmp_path / "x.txt") == [(["A", "b"], ["B-Task", "O"]), (["c"], ["B-Method"])]


def test_alignment_round_trips_and_long_sentences_lose_no_word(fixture_dir):
    tokenizer = WordPieceTokenizer.from_pretrained(fixture_dir / "init")
    words = ["parser", "xyzzy", "network", "for", "\x00", "translation"] * 5  # 30 words, one unknown, one empty
    tags = ["B-Method", "O", "B-Method", "O", "O", "B-Task"] * 5
    label_map = LabelMap.from_labels(tags)
    windows = encode_tagged([(words, tags)], tokenizer, label_map, max_length=12)
    assert len(windows) > 1 and all(len(w.input_ids) <= 12 for w in windows)
    assert [(w.start, w.end) for w in windows][0][0] == 0 and windows[-1].end == len(words)
    # Feed the gold label ids back as "predictions": the words' tags come back.
    gold_as_predictions = [[label if label != -100 else 0 for label in w.labels] for w in windows]
    predicted, unaligned = words_from_predictions([(words, tags)], windows, gold_as_predictions, label_map)
    assert unaligned == 5  # the "\x00" words have no piece: reported, given "O"
    assert predicted[0] == tags
    assert word_windows([2, 3, 1, 4], room=5) == [(0, 2), (2, 4)]
    assert word_windows([7, 1], room=5) == [(0, 1), (1, 2)]


def test_gradual_unfreezing_opens_exactly_the_scheduled_groups():
    config = BertConfig(vocab_size=20, hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=20)
    model = TransformerWithHeads(config)
    groups = train_mtl.unfreeze_groups(model)  # layer 2, layer 1, layer 0, embeddings
    for step, expected_open in [(0, 1), (9, 1), (10, 2), (25, 3), (30, 4), (100, 4)]:
        assert train_mtl.apply_gradual_unfreezing(model, step, unfreeze_every=10) == expected_open
        for index, group in enumerate(groups):
            assert all(p.requires_grad == (index < expected_open) for p in group), (step, index)


def write_three_tasks(fixture_dir, folder):
    """A task file with two classification tasks (arXiv10's JSON Lines and a CSV written here)
    and one tagging task (SciERC's CoNLL), its paths relative to the file. The CSV's dev and
    test sets each hold a label that training never had."""
    folder.mkdir()
    rng = np.random.default_rng(1)
    for split, n in (("train", 20), ("dev", 6), ("test", 6)):
        rows = ["text,label"]
        for i in range(n):
            kind = str(rng.choice(list(ENTITY_WORDS)))
            rows.append(f'"{" ".join(rng.choice(FILLER, 3))} {ENTITY_WORDS[kind][0]}",{kind}')
        if split != "train":
            rows.append("the corpus and the parser,Both")
        (folder / f"{split}.csv").write_text("\n".join(rows) + "\n")
    tasks = [{"name": "arxiv", "kind": "classification", "text_fields": ["title", "abstract"], "label_field": "label",
              **{split: f"data/classification/arxiv10/{split}.jsonl" for split in ("train", "dev", "test")}},
             {"name": "entity_kind", "kind": "classification", "text_fields": ["text"], "label_field": "label",
              **{split: f"{split}.csv" for split in ("train", "dev", "test")}},
             {"name": "entities", "kind": "tagging", "token_column": 0, "tag_column": -1, "scheme": "iob1",
              **{split: f"data/ner/scierc/conll/{split}.txt" for split in ("train", "dev", "test")}}]
    (folder / "tasks.json").write_text(json.dumps(tasks, indent=1))
    (folder / "data").symlink_to(fixture_dir)
    return folder / "tasks.json"


@pytest.mark.parametrize("strategy", train_mtl.STRATEGIES)
def test_every_strategy_runs_three_tasks_end_to_end(fixture_dir, tmp_path, strategy):
    task_file = write_three_tasks(fixture_dir, tmp_path / "own")
    weighted = strategy in ("joint", "gradual", "mmoe")  # --weights is refused where it does nothing
    results = run(fixture_dir, tmp_path / strategy, f"--strategy={strategy}", f"--tasks={task_file}",
                  "--task_fraction=entities=0.5", *(["--weights=entity_kind=2"] if weighted else []))
    saved = json.loads((tmp_path / strategy / "results.json").read_text())
    assert list(saved["test"]) == ["arxiv", "entity_kind", "entities"]
    for task in ("arxiv", "entity_kind"):
        assert 0 <= saved["test"][task]["accuracy"] <= 1 and 0 <= saved["test"][task]["macro_f1"] <= 1
    assert 0 <= saved["test"]["entities"]["f1"] <= 1 and saved["test"]["entities"]["words_without_pieces"] == 0
    assert saved["unseen_labels"]["entity_kind"] == {"dev": {"Both": 1}, "test": {"Both": 1}}
    assert results["trainable_parameters"] > 0
    phases = list(saved["phases"])
    assert phases == (["separate_arxiv", "separate_entity_kind", "separate_entities"] if strategy == "separate"
                      else [strategy])
    log = (tmp_path / strategy / f"{phases[-1]}_log.csv").read_text().splitlines()
    assert len(log) == 5  # header + 4 steps
    weights = saved["phases"][phases[0]]["final_task_weights"]
    if weighted:
        assert weights == [1.0, 2.0, 1.0]
    if strategy == "frozen":
        assert weights == [1.0, 1.0, 1.0]
    if strategy in ("gradnorm", "uncertainty"):
        assert len(weights) == 3 and weights != [1.0, 1.0, 1.0]
    if strategy == "gradnorm":
        assert all(w > 0 for w in weights) and sum(weights) == pytest.approx(3.0, abs=1e-3)
    if strategy == "mmoe":
        assert len(saved["phases"]["mmoe"]["gate_usage_dev"]) == 3


def test_frozen_leaves_the_backbone_bit_identical(fixture_dir, tmp_path):
    run(fixture_dir, tmp_path, "--strategy=frozen")
    before = load_file(fixture_dir / "init" / "model.safetensors")
    after = load_file(tmp_path / "best_frozen" / "model.safetensors")
    backbone = [k for k in before if k.startswith("bert.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)
    assert any(k.startswith("heads.arxiv") for k in after) and any(k.startswith("heads.scierc") for k in after)


def test_resume_continues_exactly(fixture_dir, tmp_path):
    run(fixture_dir, tmp_path / "straight", "--strategy=gradnorm")
    run(fixture_dir, tmp_path / "resumed", "--strategy=gradnorm", "--stop_at_step=2")
    run(fixture_dir, tmp_path / "resumed", "--strategy=gradnorm", "--resume=true")
    a = torch.load(tmp_path / "straight" / "checkpoint_gradnorm.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoint_gradnorm.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for name in a["model"]:
        assert torch.allclose(a["model"][name], b["model"][name], atol=1e-6), name
    assert torch.allclose(a["weighting"]["weights"], b["weighting"]["weights"], atol=1e-6)


def test_a_stopped_and_resumed_run_scores_and_keeps_what_an_uninterrupted_one_does(fixture_dir, tmp_path):
    """--stop_at_step is an interruption: it checkpoints, but scores dev only where the
    uninterrupted run does (it scored at the stop, and could keep that step's model as the best)."""
    run(fixture_dir, tmp_path / "straight", "--max_steps=6", "--eval_every=4")
    run(fixture_dir, tmp_path / "resumed", "--max_steps=6", "--eval_every=4", "--stop_at_step=3")
    run(fixture_dir, tmp_path / "resumed", "--max_steps=6", "--eval_every=4", "--resume=true")

    def scored(name):
        with open(tmp_path / name / "joint_log.csv") as f:
            return [(row["step"], row["dev_score"]) for row in csv.DictReader(f) if row["dev_score"]]
    assert scored("resumed") == scored("straight") and [step for step, _ in scored("straight")] == ["4", "6"]
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("straight", "resumed")]
    assert results[0]["test"] == results[1]["test"]


def test_resume_refuses_a_task_whose_labels_changed(tmp_path):
    """Same number of labels, other names: the head would have resumed silently, its ids meaning other labels."""
    fixture_dir = write_fixture(tmp_path / "data")
    run(fixture_dir, tmp_path / "run", "--stop_at_step=2")
    train = fixture_dir / "classification" / "arxiv10" / "train.jsonl"
    train.write_text(train.read_text().replace("q-bio.PE", "q-bio.GN"))
    with pytest.raises(ValueError, match=r"^--resume: task 'arxiv' has other training labels than the checkpoint: "
                                         r"new \['q-bio.GN'\], gone \['q-bio.PE'\]"):
        run(fixture_dir, tmp_path / "run", "--resume=true")


def test_uncertainty_log_variances_take_their_own_learning_rate(fixture_dir, tmp_path):
    moved = {}
    for name, extra in (("network_rate", []), ("own_rate", ["--uncertainty_lr=0.1"])):
        run(fixture_dir, tmp_path / name, "--strategy=uncertainty", *extra)
        checkpoint = torch.load(tmp_path / name / "checkpoint_uncertainty.pt", weights_only=True)
        *network, variances = checkpoint["optimizer"]["param_groups"]
        assert variances["lr"] == pytest.approx((0.1 if extra else 1e-3) / 1e-3 * network[0]["lr"])
        assert variances["weight_decay"] == 0.0
        moved[name] = checkpoint["weighting"]["log_variances"].abs()
    # Adam moves a parameter by at most about the learning rate per step: 4 steps of <= 1e-3
    assert (moved["network_rate"] <= 4e-3).all()
    assert (moved["own_rate"] > 10 * moved["network_rate"]).all()


def test_joint_training_overfits_the_tiny_two_task_set(fixture_dir, tmp_path):
    run(fixture_dir, tmp_path, "--strategy=joint", "--max_steps=150", "--eval_every=150", "--learning_rate=3e-3",
        "--warmup_fraction=0.05")
    rows = [line.split(",") for line in (tmp_path / "joint_log.csv").read_text().splitlines()[1:]]
    for column, task in ((3, "arXiv"), (4, "SciERC")):
        start = float(rows[0][column])
        end = np.mean([float(r[column]) for r in rows[-10:]])
        assert end < 0.2 * start, f"{task} loss {start:.3f} -> {end:.3f}"


def test_bad_settings(fixture_dir, tmp_path):
    with pytest.raises(ValueError, match="--strategy"):
        run(fixture_dir, tmp_path, "--strategy=mixture")
    with pytest.raises(ValueError, match="task_fraction"):
        run(fixture_dir, tmp_path, "--task_fraction=ner=0.1")
    with pytest.raises(ValueError, match="--weights"):
        run(fixture_dir, tmp_path, "--weights=1,2,3")
    with pytest.raises(ValueError, match=r"^--task_fraction: scierc takes a fraction in \(0, 1\], got 'abc'$"):
        run(fixture_dir, tmp_path, "--task_fraction=scierc=abc")
    with pytest.raises(ValueError, match=r"^--weights: arxiv takes a number >= 0, got 'a'$"):
        run(fixture_dir, tmp_path, "--weights=a,b")
    with pytest.raises(ValueError, match="--uncertainty_lr"):
        run(fixture_dir, tmp_path, "--strategy=uncertainty", "--uncertainty_lr=-0.1")


@pytest.mark.parametrize("setting, expected", [
    ("--top_k=5", r"^--top_k=5 routes each example to more experts than --experts=4"),
    ("--expert_layers=9", r"^--expert_layers=9 is more than the 2 layers of the model \(num_hidden_layers of --init=")])
def test_mixture_settings_are_named_with_their_dashes_before_the_data_is_read(fixture_dir, tmp_path, capsys, setting,
                                                                              expected):
    """They were found when the model was built, after every task was read, and named as the
    Python parameters (`top_k must be ...`)."""
    with pytest.raises(ValueError, match=expected):
        run(fixture_dir, tmp_path, "--strategy=mmoe", "--experts=4", setting)
    assert "train" not in capsys.readouterr().out  # no task was described: none was read


@pytest.mark.parametrize("strategy", ["frozen", "gradnorm", "uncertainty", "separate", "mmoe"])
def test_weights_only_with_a_strategy_that_uses_them(fixture_dir, tmp_path, strategy):
    """Static weights mix the losses of a shared model; elsewhere they were silently ignored
    (gradnorm, uncertainty) or only scaled one loss that Adam normalises anyway (frozen, separate)."""
    extra = ["--weighting=gradnorm"] if strategy == "mmoe" else []
    with pytest.raises(ValueError, match=r"^--weights .*--strategy=joint, gradual or mmoe"):
        run(fixture_dir, tmp_path, f"--strategy={strategy}", "--weights=1,2", *extra)


@pytest.mark.parametrize("setting", ["--cls_max_length", "--ner_max_length"])
def test_a_max_length_longer_than_the_model_is_refused(fixture_dir, tmp_path, setting):
    with pytest.raises(ValueError, match=rf"^{setting}=129 is more than the 128 positions of the model"):
        run(fixture_dir, tmp_path, f"{setting}=129")


def test_a_task_with_less_than_one_batch_is_refused_before_training(fixture_dir, tmp_path):
    with pytest.raises(ValueError, match=r"^task 'arxiv' has 3 training examples .*--train_limit.*--batch_size=4"):
        run(fixture_dir, tmp_path, "--train_limit=arxiv=3")


def test_mmoe_composes_with_gradnorm_frozen_shared_layers_and_routing(fixture_dir, tmp_path):
    results = run(fixture_dir, tmp_path, "--strategy=mmoe", "--experts=3", "--expert_layers=1", "--top_k=2",
                  "--weighting=gradnorm", "--freeze_shared=true", "--balance_weight=0.01")
    before = load_file(fixture_dir / "init" / "model.safetensors")
    after = load_file(tmp_path / "best_mmoe" / "model.safetensors")
    shared = [k for k in after if k.startswith("bert.")]  # embeddings and layer 0; layer 1 became the experts
    assert shared and all(torch.equal(before[k], after[k]) for k in shared)
    assert not any(".layer.1." in k for k in shared) and any(k.startswith("mixture.experts.2.") for k in after)
    phase = results["phases"]["mmoe"]
    assert sum(phase["final_task_weights"]) == pytest.approx(2.0, abs=1e-3) and min(phase["final_task_weights"]) > 0
    for task, usage in phase["gate_usage_dev"].items():
        assert len(usage) == 3 and sum(usage) == pytest.approx(1.0, abs=1e-5), task
    assert (tmp_path / "gates.png").is_file()
    with pytest.raises(ValueError, match="belong to --strategy=mmoe"):
        run(fixture_dir, tmp_path / "x", "--strategy=joint", "--weighting=gradnorm")


@pytest.mark.parametrize("strategy", ["frozen", "joint", "gradnorm"])
def test_plain_loops_end_with_the_weights_of_train_mtl(fixture_dir, tmp_path, strategy):
    """minibert/loops.py is train_mtl.py without the plumbing: same seed, data and steps, same weights."""
    weights = {"frozen": "", "joint": "arxiv=1,scierc=3", "gradnorm": ""}[strategy]
    run(fixture_dir, tmp_path, f"--strategy={strategy}", f"--weights={weights}")
    tokenizer = WordPieceTokenizer.from_pretrained(fixture_dir / "init")
    tasks = [task.load(tokenizer, seed=1337) for task in builtin_tasks(fixture_dir)]
    torch.manual_seed(1337)  # the heads start as train_mtl.py's do
    model = train_mtl.build_model({**train_mtl.DEFAULTS, "init": fixture_dir / "init"}, tasks,
                                  train_mtl.STRATEGIES[strategy])
    if strategy == "frozen":  # run() trains 4 steps of batch 4 at learning rate 1e-3 (heads: 1e-3 by default)
        loops.frozen_heads(model, tasks, steps=4, batch_size=4, learning_rate=1e-3)
    elif strategy == "joint":
        loops.joint_static(model, tasks, steps=4, weights=[1, 3], batch_size=4, learning_rate=1e-3)
    else:
        model, task_weights = loops.joint_gradnorm(model, tasks, steps=4, batch_size=4, learning_rate=1e-3)
    checkpoint = torch.load(tmp_path / f"checkpoint_{strategy}.pt", weights_only=True)
    if strategy == "gradnorm":
        assert torch.equal(task_weights, checkpoint["weighting"]["weights"])
    trained = model.state_dict()
    assert trained.keys() == checkpoint["model"].keys()
    for name, value in checkpoint["model"].items():
        assert torch.equal(trained[name], value), name
