"""Training building blocks: schedule values, weight-decay groups, config handling, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.config import TrainConfig, apply_overrides, config_differences
from cnnlab.train.distributed import Dist
from cnnlab.train.loop import Normalize, epoch_batches
from cnnlab.train.optim import lr_at, make_optimizer, param_groups


def test_warmup_is_linear_and_ends_at_the_peak() -> None:
    # 10 steps, 20% warm-up = 2 steps: 0.5, 1.0, then the decay starts from the peak.
    assert [lr_at(s, 10, 1.0, 0.2, "onecycle") for s in range(3)] == [0.5, 1.0, 1.0]
    assert lr_at(2, 10, 1.0, 0.2, "cosine") == 1.0


def test_onecycle_falls_linearly_and_cosine_along_a_half_cosine() -> None:
    assert lr_at(6, 10, 1.0, 0.2, "onecycle") == pytest.approx(0.5)  # half-way through the 8 decay steps
    assert lr_at(9, 10, 1.0, 0.2, "onecycle") == pytest.approx(1 / 8)
    assert lr_at(6, 10, 1.0, 0.2, "cosine") == pytest.approx(0.5)
    assert lr_at(4, 10, 1.0, 0.2, "cosine") == pytest.approx(0.5 * (1 + 2 ** -0.5))  # cos(pi/4)
    assert lr_at(0, 10, 0.3, 0.0, "onecycle") == pytest.approx(0.3)  # no warm-up: start at the peak


def test_weight_decay_skips_norm_and_bias_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, no_decay = param_groups(model, 0.05)
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias),
                                                    id(model[3].bias)}
    opt = make_optimizer(model, "sgd", 0.1, 0.05, 0.9)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert opt.param_groups[0]["nesterov"] is True


def test_config_is_never_mutated_and_lr_is_resolved() -> None:
    cfg = TrainConfig(data="builtin:shapes", model="mini_xception")
    resolved = cfg.resolved()
    assert cfg.lr is None and resolved.lr == 2e-3
    assert TrainConfig(data="d", model="m", optimizer="sgd").resolved().lr == 0.1
    changed = apply_overrides(cfg, {"epochs": 3}, "recipe 'x'")
    assert cfg.epochs == 10 and changed.epochs == 3
    with pytest.raises(CnnlabError, match="recipe 'x' sets unknown training options \\['epoch'\\]"):
        apply_overrides(cfg, {"epoch": 3}, "recipe 'x'")
    with pytest.raises(CnnlabError, match="--warmup"):
        cfg.resolved(warmup=1.5)
    # builtin data used to report --limit 0 as its own option "n=0 is out of range"
    with pytest.raises(CnnlabError, match="--limit must be at least 1"):
        cfg.resolved(limit=0)
    with pytest.raises(CnnlabError, match="--threads must be a positive count"):
        cfg.resolved(threads=-2)


def test_config_differences_name_the_keys() -> None:
    a = TrainConfig(data="d", model="m").to_dict()
    b = TrainConfig(data="d", model="other", lr=0.5, epochs=99).to_dict()
    diffs = config_differences(a, b)
    assert [d.split(":")[0] for d in diffs] == ["model", "lr"]  # epochs may change on resume


def test_epoch_batches_are_seeded_and_ranks_get_disjoint_equal_shards() -> None:
    one = epoch_batches(10, 3, seed=1, epoch=0, dist=Dist())
    assert [len(b) for b in one] == [3, 3, 3]  # the partial batch is dropped
    assert all(torch.equal(a, b) for a, b in zip(one, epoch_batches(10, 3, 1, 0, Dist()), strict=True))
    assert not torch.equal(torch.cat(one), torch.cat(epoch_batches(10, 3, 1, 1, Dist())))
    ranks = [torch.cat(epoch_batches(10, 2, 1, 0, Dist(r, 2))) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 4
    assert not set(ranks[0].tolist()) & set(ranks[1].tolist())


def test_normalize_measures_per_channel_statistics() -> None:
    x = torch.zeros(2, 2, 4, 4, dtype=torch.uint8)
    x[:, 1] = 255
    x[1, 0] = 255
    norm = Normalize.from_images(x)
    assert norm.mean == [0.5, 1.0]
    assert norm.std[0] == pytest.approx(0.5)
    out = norm(x)
    assert out[0, 0].eq(-1).all() and out[1, 0].eq(1).all()


def test_optimizer_and_rng_state_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = make_optimizer(model, "adamw", 1e-2, 0.1, 0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    ckpt.save_model(tmp_path / ckpt.MODEL, model, step=1)
    ckpt.save_state(tmp_path, opt, {"step": 1, "epoch": 0})
    expected_rng = torch.rand(3)
    torch.manual_seed(123)
    fresh = nn.Linear(3, 2)
    opt2 = make_optimizer(fresh, "adamw", 1e-2, 0.1, 0.9)
    assert ckpt.load_model_weights(tmp_path / ckpt.MODEL, fresh) == 1
    info = ckpt.load_state(tmp_path, opt2)
    assert info["epoch"] == 0 and ckpt.check_consistent(tmp_path) == 1
    assert torch.equal(torch.rand(3), expected_rng)  # the RNG continues where it was saved
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt.state[p][key], opt2.state[q][key])


def test_checkpoint_files_from_different_steps_are_refused(tmp_path) -> None:
    model = nn.Linear(3, 2)
    opt = make_optimizer(model, "sgd", 0.1, 0.0, 0.9)
    ckpt.save_model(tmp_path / ckpt.MODEL, model, step=5)
    ckpt.save_state(tmp_path, opt, {"step": 4, "epoch": 0})
    with pytest.raises(CnnlabError, match="inconsistent"):
        ckpt.check_consistent(tmp_path)


def test_damaged_run_files_are_user_errors_naming_the_file(tmp_path) -> None:
    # each of these used to escape as a JSONDecodeError / SafetensorError / RuntimeError traceback
    (tmp_path / ckpt.CONFIG).write_text('{"task": "classify", "mod')
    with pytest.raises(CnnlabError, match=r"config\.json is damaged \(not valid JSON"):
        ckpt.read_json(tmp_path / ckpt.CONFIG)
    ckpt.save_model(tmp_path / ckpt.MODEL, nn.Linear(3, 2), step=1)
    with pytest.raises(CnnlabError, match="cannot be loaded into the model its config.json describes"):
        ckpt.load_model_weights(tmp_path / ckpt.MODEL, nn.Linear(4, 2))  # another model's weights
    (tmp_path / ckpt.MODEL).write_bytes((tmp_path / ckpt.MODEL).read_bytes()[:20])  # cut short
    with pytest.raises(CnnlabError, match="the run directory is damaged or mixed"):
        ckpt.load_model_weights(tmp_path / ckpt.MODEL, nn.Linear(3, 2))


def test_atomic_write_leaves_no_file_when_writing_fails(tmp_path) -> None:
    def fail(path) -> None:
        path.write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        ckpt.atomic_write(tmp_path / "x.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_recipe_overrides_apply_and_command_line_options_win(monkeypatch, tmp_path) -> None:
    from cnnlab.cli.train import build_config
    from cnnlab.train import recipes

    monkeypatch.setitem(recipes.RECIPES, "test-recipe", {"epochs": 3, "lr": 0.2, "optimizer": "sgd"})
    cfg = build_config("classify", {"recipe": "test-recipe", "lr": 0.05, "out": str(tmp_path), "data": None},
                       resume=False)
    assert (cfg.epochs, cfg.lr, cfg.optimizer, cfg.recipe) == (3, 0.05, "sgd", "test-recipe")
    with pytest.raises(CnnlabError, match="unknown recipe 'test-recipee' \\(did you mean: test-recipe"):
        build_config("classify", {"recipe": "test-recipee", "out": str(tmp_path)}, resume=False)


def test_resume_refuses_data_with_other_classes_or_sizes(tmp_path) -> None:
    from cnnlab.train.resume import check_data_matches

    saved = {"class_names": ["a", "b"], "preprocess": {"in_channels": 3, "image_size": [32, 32]}}  # an old run
    check_data_matches(saved, {"class_names": ["a", "b"], "in_channels": 3, "image_size": [32, 32]}, tmp_path)
    with pytest.raises(CnnlabError, match=r"data differs in class_names: \['a', 'b'\] -> \['a', 'c'\]; "
                                          r"image_size: \[32, 32\] -> \[64, 64\]"):
        check_data_matches(saved, {"class_names": ["a", "c"], "in_channels": 3, "image_size": [64, 64]}, tmp_path)


def test_busy_machine_trains_with_one_thread(monkeypatch) -> None:
    import io

    from rich.console import Console

    from cnnlab.train import machine

    before = torch.get_num_threads()
    out = io.StringIO()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(machine.os, "getloadavg", lambda: (50.0, 50.0, 50.0))
        assert machine.choose_threads(None, Console(file=out)) == 1 and torch.get_num_threads() == 1
        assert "--threads 2" in out.getvalue()
        assert machine.choose_threads(2, Console(file=out)) == 2  # an explicit request is kept
        monkeypatch.setattr(machine.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
        assert machine.choose_threads(None, Console(file=out)) == 2  # idle: torch's choice stays
    finally:
        torch.set_num_threads(before)


# --- airbench's tricks: schedule ends, norm-layer lr, lookahead, test-time augmentation -------------

def _old_lr_at(step: int, total: int, peak: float, warmup: float, schedule: str) -> float:
    """lr_at as it was before lr_start / lr_end existed (copied), to pin the defaults bit-for-bit."""
    import math

    warmup_steps = round(warmup * total)
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total - warmup_steps, 1), 1.0)
    return peak * (1.0 - progress) if schedule == "onecycle" else peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def test_default_schedule_is_bit_for_bit_unchanged_and_airbench_triangle_is_exact() -> None:
    for schedule in ("onecycle", "cosine"):
        assert [lr_at(s, 97, 1.37, 0.23, schedule) for s in range(97)] == \
            [_old_lr_at(s, 97, 1.37, 0.23, schedule) for s in range(97)]
    # airbench: 0.2 -> 1 over the first 23 of 100 steps, then linearly down to 0.07 after the last step
    tri = [lr_at(s, 100, 2.0, 0.23, "onecycle", start=0.2, end=0.07) for s in range(100)]
    assert tri[0] == pytest.approx(2.0 * (0.2 + 0.8 / 23))
    assert tri[22] == pytest.approx(2.0) and tri[23] == pytest.approx(2.0)
    assert tri[99] == pytest.approx(2.0 * (1 - 0.93 * 76 / 77))
    assert lr_at(60, 60, 1.0, 0.2, "cosine", end=0.1) == pytest.approx(0.1)  # cosine ends at `end` too
    with pytest.raises(CnnlabError, match="--lr-end"):
        TrainConfig(data="d", model="m").resolved(lr_end=1.5)


def test_norm_lr_scale_groups_norm_parameters_with_scaled_lr_and_decay() -> None:
    from cnnlab.train.optim import set_lr

    class LayerNorm2d(nn.Module):  # a custom norm layer: recognised by its name
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight.view(1, -1, 1, 1)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), LayerNorm2d(), nn.Flatten(), nn.Linear(4, 2))
    opt = make_optimizer(model, "sgd", 0.1, 0.05, 0.9, norm_lr_scale=64.0)
    decay, no_decay, norm = opt.param_groups
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[4].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[4].bias)}  # plain biases
    assert {id(p) for p in norm["params"]} == {id(model[1].weight), id(model[1].bias), id(model[2].weight)}
    assert (decay["weight_decay"], no_decay["weight_decay"], norm["weight_decay"]) == (0.05, 0.0, 0.05 / 64)
    set_lr(opt, 0.3)
    assert [g["lr"] for g in opt.param_groups] == [0.3, 0.3, 0.3 * 64]
    assert norm["lr"] * norm["weight_decay"] == pytest.approx(decay["lr"] * decay["weight_decay"])  # same decay/step
    # the shrink torch applies really is lr * weight_decay: a zero-gradient first step (Nesterov's
    # first step moves 1 + momentum times the decayed gradient) of a norm and of a conv weight
    before = [model[1].weight.detach().clone(), model[0].weight.detach().clone()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for param, old in zip((model[1].weight, model[0].weight), before, strict=True):
        assert torch.allclose(param, old * (1 - 0.3 * 0.05 * 1.9))
    # scale 1: exactly the two groups of before (old checkpoints' optimizer state still loads)
    assert len(make_optimizer(model, "sgd", 0.1, 0.05, 0.9, norm_lr_scale=1.0).param_groups) == 2


def test_lookahead_matches_a_hand_computation_on_a_two_parameter_model(tmp_path) -> None:
    from cnnlab.train.lookahead import Lookahead

    model = nn.BatchNorm1d(1)  # 2 parameters, 2 float buffers and an integer counter (not averaged)
    la = Lookahead(model)
    assert sorted(la.ema) == ["bias", "running_mean", "running_var", "weight"]
    ema = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
    total = 10
    for step in range(1, total + 1):
        with torch.no_grad():  # "training": every entry moves to a new value
            for name, v in (("weight", 2.0 * step), ("bias", -float(step)), ("running_mean", 0.5 * step),
                            ("running_var", 1.0 + step)):
                getattr(model, name).fill_(v)
        net = {k: float(v) for k, v in model.state_dict().items() if k in ema}
        la.after_step(step, total)
        if step % 5 == 0:
            d = 0.95 ** 5 * (step / total) ** 3
            ema = {k: d * ema[k] + (1 - d) * net[k] for k in ema}
            expected = ema
        else:
            expected = net  # between pulls the net is left alone
        got = {k: float(v) for k, v in model.state_dict().items() if k in ema}
        assert got == pytest.approx(expected, rel=1e-6), step
        assert {k: float(v) for k, v in la.ema.items()} == pytest.approx(ema, rel=1e-6)
    with torch.no_grad():
        model.weight.fill_(123.0)
    la.finish(10, total)  # after a pull step: decay 1, the net becomes the EMA, which does not move
    assert float(model.weight.detach()) == pytest.approx(ema["weight"], rel=1e-6)
    assert {k: float(v) for k, v in la.ema.items()} == pytest.approx(ema, rel=1e-6)
    with torch.no_grad():
        model.weight.fill_(7.0)
    la.finish(12, 12)  # off the 5-step grid: the last steps are pulled in with decay_at(12, 12) first
    d = 0.95 ** 5
    assert float(model.weight.detach()) == pytest.approx(d * ema["weight"] + (1 - d) * 7.0, rel=1e-6)
    ema = {k: float(v) for k, v in la.ema.items()}
    # the EMA round-trips through its file, and a file of another step is refused
    la.save(tmp_path / "la.safetensors", step=10)
    other = Lookahead(nn.BatchNorm1d(1))
    other.load(tmp_path / "la.safetensors", step=10)
    assert all(torch.equal(other.ema[k], la.ema[k]) for k in la.ema)
    with pytest.raises(CnnlabError, match="inconsistent"):
        other.load(tmp_path / "la.safetensors", step=11)


def test_tta_averages_logits_as_computed_by_hand() -> None:
    from cnnlab.tasks.classify import tta_outputs

    class FirstRow(nn.Module):  # logits = the first image row, weighted 1, 2, 3
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0, 0, :] * torch.tensor([1.0, 2.0, 3.0])

    x = torch.arange(9.0).view(1, 1, 3, 3)  # rows 0 1 2 / 3 4 5 / 6 7 8
    model = FirstRow()
    assert tta_outputs(model, x, "none").tolist() == [[0.0, 2.0, 6.0]]
    # mirror: row 2 1 0 -> (0 2 6 + 2 2 0) / 2
    assert tta_outputs(model, x, "flip").tolist() == [[1.0, 2.0, 3.0]]
    # reflect-padded shifts: up-left's first row is 4 3 4, down-right's 4 5 4 (both mirror-symmetric),
    # weighted: 4 6 12 and 4 10 12, mean 4 8 12; half of that plus half of the flip mean 1 2 3
    assert tta_outputs(model, x, "flip-translate").tolist() == [[2.5, 5.0, 7.5]]


def test_tta_flip_leaves_a_mirror_symmetric_model_unchanged_and_is_refused_for_other_tasks() -> None:
    from cnnlab.data import ImageData
    from cnnlab.tasks import get_task
    from cnnlab.tasks.classify import ClassifyTask
    from cnnlab.train.loop import check_tta, evaluate
    from cnnlab.train.precision import make_precision

    torch.manual_seed(0)
    # global average pooling makes the model exactly mirror-symmetric
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    x = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 4, (40,))
    task, prec, norm = get_task("classify"), make_precision("fp32", "cpu", False), Normalize([0.5] * 3, [0.25] * 3)
    data, info = ImageData(x, y), {"class_names": list("abcd")}
    plain = evaluate(model, task, data, norm, prec, 16, info).compute()
    flip = evaluate(model, task, data, norm, prec, 16, info, tta="flip").compute()
    assert flip["top1"] == plain["top1"] and flip["loss"] == pytest.approx(plain["loss"], rel=1e-5)

    class Localize(ClassifyTask):  # a task whose outputs a mirror changes the meaning of
        name = "localize"
        tta_modes = ("none",)

    check_tta("flip", task)
    check_tta("none", Localize())
    with pytest.raises(CnnlabError, match="--tta flip is not defined for task 'localize'"):
        check_tta("flip", Localize())
