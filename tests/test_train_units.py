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
    from cnnlab.train.runner import check_data_matches

    saved = {"class_names": ["a", "b"], "preprocess": {"in_channels": 3, "image_size": [32, 32]}}
    check_data_matches(saved, ["a", "b"], 3, (32, 32), tmp_path)  # the same data: fine
    with pytest.raises(CnnlabError, match=r"data differs in class_names: \['a', 'b'\] -> \['a', 'c'\]; "
                                          r"image_size: \[32, 32\] -> \[64, 64\]"):
        check_data_matches(saved, ["a", "c"], 3, (64, 64), tmp_path)


def test_busy_machine_trains_with_one_thread(monkeypatch) -> None:
    import io

    from rich.console import Console

    from cnnlab.train import runner

    before = torch.get_num_threads()
    out = io.StringIO()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(runner.os, "getloadavg", lambda: (50.0, 50.0, 50.0))
        assert runner.choose_threads(None, Console(file=out)) == 1 and torch.get_num_threads() == 1
        assert "--threads 2" in out.getvalue()
        assert runner.choose_threads(2, Console(file=out)) == 2  # an explicit request is kept
        monkeypatch.setattr(runner.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
        assert runner.choose_threads(None, Console(file=out)) == 2  # idle: torch's choice stays
    finally:
        torch.set_num_threads(before)
