"""The method registry: one call per method, the same models as the code before it, and a method
added in one place reaching ``compare``."""

import copy

import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

import greedyprune.prune as gp
from greedyprune.prune import _registry

SIZE = 16


def _model(seed=0):
    torch.manual_seed(seed)
    model = gp.build_model("resnet18", 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def _data(n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g)
    )


def test_every_compare_method_is_in_exactly_one_registry():
    assert set(gp.SELECTION_METHODS).isdisjoint(gp.WIDTH_RULES)
    assert gp.METHODS == (*gp.SELECTION_METHODS, *gp.WIDTH_RULES)
    assert set(gp.BASELINES) | {"greedy", *gp.LOCAL_METHODS} == set(gp.SELECTION_METHODS)
    assert "greedy" not in gp.BASELINES and not set(gp.LOCAL_METHODS) & set(gp.BASELINES)
    for name, spec in gp.SELECTION_METHODS.items():
        assert spec.name == name and spec.description
    for name, rule in gp.WIDTH_RULES.items():
        assert rule.name == name and rule.description


def test_greedy_through_the_registry_is_greedy_prune_then_fold_and_prune():
    """The exact reference: the code compare ran before the registry (``greedy_prune`` on a
    stream drawn with the seed's generator, then ``fold_and_prune``), against ``select_channels``
    + ``apply_choice``. Same channels, same weights (greedy's gates are not 0/1: they scale the
    consumers, so a choice applied without its scales differs)."""
    data, example = _data(), torch.zeros(1, 3, SIZE, SIZE)
    model = _model()
    groups = gp.find_prunable_groups(model, example)[:3]
    ref = copy.deepcopy(model)
    stream = gp.batch_stream(data, 4, generator=torch.Generator().manual_seed(5))
    gm, _ = gp.greedy_prune(
        ref, stream, example, target_macs=0.95, candidates=3, generator=5, groups=groups
    )
    ref, ref_kept = gp.fold_and_prune(gm)
    seen = []
    request = gp.SelectionRequest(
        model=model,
        example=example,
        groups=groups,
        widths={g.name: g.n_channels for g in groups},
        generator=torch.Generator().manual_seed(5),
        target_macs=gp.parse_macs(0.95, gp.count_macs(model, example)),
        data=data,
        batch_size=4,
        seed=5,
        options={"candidates": 3},
        on_images=seen.append,
    )
    choice = gp.select_channels("greedy", request)
    assert choice.kept == ref_kept
    assert any(not torch.all((s == 0) | (s == 1)) for s in choice.scales.values())
    gp.apply_choice(model, example, groups, choice)
    ref_state, state = ref.state_dict(), model.state_dict()
    assert ref_state.keys() == state.keys()
    for k in state:
        assert torch.equal(state[k], ref_state[k]), k
    # every forward pass through the classifier counted (K candidates x 4 images per step)
    assert seen and all(k % 4 == 0 for k in seen if k > 1)


def test_a_criterion_through_the_registry_is_baseline_channels():
    model, example = _model(), torch.zeros(1, 3, SIZE, SIZE)
    groups = gp.find_prunable_groups(model, example)
    widths = {g.name: max(1, g.n_channels // 4) for g in groups}
    batch = next(iter([(torch.randn(4, 3, SIZE, SIZE), torch.randint(0, 10, (4,)))]))
    for method in ("l1", "taylor", "random"):
        request = gp.SelectionRequest(
            model, example, groups, widths, torch.Generator().manual_seed(3), batch=batch
        )
        got = gp.select_channels(method, request)
        assert got.scales == {}
        assert got.kept == gp.baseline_channels(
            method, model, example, groups, widths, batch=batch,
            generator=torch.Generator().manual_seed(3),
        )  # fmt: skip


def test_select_channels_refuses_bad_names_and_widths():
    model, example = _model(), torch.zeros(1, 3, SIZE, SIZE)
    groups = gp.find_prunable_groups(model, example)[:1]
    g = groups[0]
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"^method='l2' must be one of 'greedy', 'l1'"):
        gp.select_channels("l2", gp.SelectionRequest(model, example, groups, {}, gen))
    for bad in (0, g.n_channels + 1, 2.0, True):
        with pytest.raises(ValueError, match=rf"widths\['{g.name}'\]"):
            gp.select_channels(
                "l1", gp.SelectionRequest(model, example, groups, {g.name: bad}, gen)
            )
    with pytest.raises(ValueError, match="registered already"):
        gp.register_method("l1", "again")(lambda r: None)


def test_a_method_registered_in_one_place_runs_in_compare(tmp_path, monkeypatch):
    """Adding a method is one registered function: compare accepts it and prunes with it to the
    same widths as the others (equal MACs)."""
    monkeypatch.setattr(_registry, "SELECTION_METHODS", dict(gp.SELECTION_METHODS))
    import greedyprune.prune._compare_job as job

    monkeypatch.setattr(job, "SELECTION_METHODS", _registry.SELECTION_METHODS)

    @gp.register_method("first", "the first channels of every group, trained weights kept")
    def first(request):
        return gp.Choice({g.name: list(range(request.widths[g.name])) for g in request.groups})

    df = gp.compare(
        "resnet18",
        "synthetic",
        tmp_path / "run",
        methods=["first", "l1"],
        image_size=SIZE,
        train_epochs=0.05,
        finetune_epochs=0.05,
        progress=False,
    )
    df = df.set_index("method")
    assert set(df.index) == {"first", "l1"}
    assert df.loc["first", "macs"] == df.loc["l1", "macs"]
    assert (
        pd.read_csv(tmp_path / "run" / "results.csv")["unit"] == ["first-0.5-s0", "l1-0.5-s0"]
    ).all()
    assert not (tmp_path / "run" / "base-train.pt").exists()  # removed once every unit is done


def test_the_command_and_the_library_compare_the_same_methods_by_default():
    import argparse

    from greedyprune.prune._compare_job import DEFAULT_METHODS
    from greedyprune.prune.cli import compare as cli_compare

    parser = argparse.ArgumentParser()
    cli_compare.add_arguments(parser)
    assert tuple(parser.get_default("methods")) == DEFAULT_METHODS
    assert gp.CompareSettings().methods == DEFAULT_METHODS
