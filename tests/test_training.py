"""Unit tests of glassbox.training: the loop against a hand-written AdamW loop, the learning-rate schedule read
off a parameter's steps, minibatches, history, accuracy, and list_accuracy on oracle models."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from glassbox import training
from glassbox.studies import find_median


def test_the_schedule_is_linear_warmup_times_cosine_decay():
    # loss = p with Adam: every step moves p by exactly the learning rate of that step (bias-corrected m/sqrt(v) = 1)
    p = nn.Parameter(torch.zeros(()))
    model = nn.Module()
    model.p = p
    seen = []

    def loss_fn(m, batch):
        seen.append(p.item())
        return p * 1.0

    steps, warmup, lr = 10, 3, 0.1
    training.train(model, iter(lambda: None, 1), steps=steps, lr=lr, warmup=warmup, loss_fn=loss_fn, eval_every=100)
    moved = -np.diff(seen + [p.item()])
    expected = [lr * min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * s / steps)) for s in range(steps)]
    assert np.allclose(moved, expected, atol=1e-6), f"learning rates {moved.round(4)} are not warmup x cosine {np.round(expected, 4)}"


def reference_train(model, batches, steps, lr, weight_decay, betas, clip_grad):
    """The same algorithm written out: AdamW, warmup 0, cosine decay, optional gradient clipping."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=betas)
    for s in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * s / steps))
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        if clip_grad is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        opt.step()


@pytest.mark.parametrize("weight_decay,betas,clip_grad", [(0.0, (0.9, 0.999), None), (0.3, (0.5, 0.9), 0.05)])
def test_train_takes_the_same_steps_as_a_hand_written_adamw_loop(weight_decay, betas, clip_grad):
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randint(0, 3, (64,))
    a = nn.Linear(5, 3)
    b = nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    kw = dict(steps=7, lr=0.05)
    training.train(a, training.minibatches(x, y, 16, seed=2), weight_decay=weight_decay, betas=betas, clip_grad=clip_grad, **kw)
    reference_train(b, training.minibatches(x, y, 16, seed=2), weight_decay=weight_decay, betas=betas, clip_grad=clip_grad, **kw)
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6), \
        "train() must be AdamW with these betas, weight decay and clipping, zeroing gradients every step"


def test_train_logs_every_eval_every_steps_and_the_last_step_with_the_model_in_eval_mode():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    modes = []
    batches = iter(lambda: (torch.randn(4, 2), torch.tensor([0, 1, 0, 1])), None)
    history = training.train(model, batches, steps=7, eval_every=3, evaluate=lambda m: modes.append(m.training) or {"acc": 0.5})
    assert history.column("step") == [0, 3, 6], "log at steps 0, eval_every, ... and the last one"
    assert modes == [False, False, False], "evaluate must see the model in eval mode"
    assert not model.training, "train() must return the model in eval mode"
    assert history.column("acc") == [0.5] * 3 and len(history.column("loss")) == 3
    history = training.train(model, batches, steps=5, eval_every=3)
    assert history.column("step") == [0, 3, 4]
    seen = []
    training.train(model, batches, steps=3, eval_every=1, evaluate=lambda m: {},
                   loss_fn=lambda m, b: seen.append(m.training) or F.cross_entropy(m(b[0]), b[1]))
    assert seen == [True] * 3, "after evaluating, training must go on in train mode"
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        training.train(model, batches, steps=0)


def test_the_logged_loss_is_the_loss_of_that_step():
    losses = iter([5.0, 4.0, 3.0])
    p = nn.Parameter(torch.zeros(()))
    model = nn.Module()
    model.p = p
    history = training.train(model, iter(lambda: None, 1), steps=3, eval_every=1, loss_fn=lambda m, b: p * 0 + next(losses))
    assert history.column("loss") == [5.0, 4.0, 3.0]


def test_history_column_and_last():
    h = training.History(records=[{"step": 0, "loss": 2.0}, {"step": 1, "loss": 1.0, "acc": 0.5}, {"step": 2, "loss": 0.5}])
    assert h.column("loss") == [2.0, 1.0, 0.5] and h.column("acc") == [0.5]
    assert h.last("loss") == 0.5 and h.last("acc") == 0.5
    with pytest.raises(KeyError, match=r"'f1' was never logged; logged keys: \['acc', 'loss', 'step'\]"):
        h.last("f1")


def test_minibatches_cover_every_example_once_per_epoch_in_a_seeded_order():
    x, y = torch.arange(10), torch.arange(10) * 10
    stream = training.minibatches(x, y, 4, seed=1)
    epoch = [next(stream) for _ in range(3)]
    assert [len(b[0]) for b in epoch] == [4, 4, 2], "the last batch of an epoch holds the remainder"
    seen = torch.cat([b[0] for b in epoch])
    assert sorted(seen.tolist()) == list(range(10)), "every example exactly once per epoch"
    assert all(torch.equal(bx * 10, by) for bx, by in epoch), "x and y must stay paired"
    assert not torch.equal(seen, x), "the order must be shuffled"
    again = torch.cat([next(training.minibatches(x, y, 10, seed=1))[0]])
    assert torch.equal(again, seen), "same seed, same order"
    assert not torch.equal(next(training.minibatches(x, y, 10, seed=2))[0], seen)
    assert not torch.equal(torch.cat([next(stream)[0] for _ in range(3)]), seen), "each epoch gets a new permutation"
    with pytest.raises(ValueError, match="same length, got 10 and 9"):
        next(training.minibatches(x, y[:9], 4))


def test_predict_accuracy_and_per_class_accuracy_on_known_logits():
    model = nn.Identity()
    logits = torch.tensor([[2.0, 0, 0], [0, 3, 0], [0, 0, 1], [5, 0, 0], [0, 1, 2]])
    y = torch.tensor([0, 1, 1, 0, 2])
    assert torch.equal(training.predict(model, logits, batch_size=2), logits), "batches joined in order"
    assert not training.predict(nn.Linear(3, 3), logits).requires_grad
    assert training.accuracy(model, logits, y, batch_size=2) == pytest.approx(4 / 5)
    per_class = training.per_class_accuracy(logits, y, 4)
    assert torch.allclose(per_class, torch.tensor([1.0, 0.5, 1.0, 0.0])), "class 3 has no example: 0, not NaN"
    assert training.per_class_accuracy(logits, y).shape == (3,)


class Oracle(nn.Module):
    """A list 'model' answering the median (or min) at the last position, counting the lists it sees."""

    def __init__(self, task, n_ctx=5, d_vocab=20):
        super().__init__()
        self.task, self.seen = task, []
        self.cfg = type("Cfg", (), {"n_ctx": n_ctx, "d_vocab": d_vocab})()

    def forward(self, tokens):
        self.seen.append(tokens)
        answer = find_median.list_targets(tokens, self.task)
        return F.one_hot(answer, self.cfg.d_vocab).float()[:, None].expand(-1, tokens.shape[1], -1)


def test_list_accuracy_scores_uniform_lists_and_every_family():
    oracle = Oracle("median")
    acc = find_median.list_accuracy(oracle, "median", n_uniform=30, n_family=10, seed=3)
    assert acc["uniform_accuracy"] == 1.0 and set(acc["family_accuracy"]) == set(find_median.FAMILIES)
    assert all(a == 1.0 for a in acc["family_accuracy"].values())
    sizes = [len(t) for t in oracle.seen]
    assert sum(sizes) == 30 + 10 * len(find_median.FAMILIES), "n_uniform uniform lists and n_family lists of each family"
    assert all(t.shape[1] == 5 and t.max() < 20 for t in oracle.seen), "lists shaped by the model's n_ctx and d_vocab"
    wrong = find_median.list_accuracy(Oracle("min"), "median", n_uniform=200, n_family=10)
    assert wrong["uniform_accuracy"] < 0.3 and wrong["family_accuracy"]["all_equal"] == 1.0, "min is not the median"
    assert find_median.list_accuracy(Oracle("min"), "min", n_uniform=50, n_family=5)["uniform_accuracy"] == 1.0
    other = Oracle("median")
    find_median.list_accuracy(other, "median", n_uniform=30, n_family=10, seed=4)
    assert not torch.equal(other.seen[0], oracle.seen[0]), "another seed must draw other lists"


def test_train_list_model_passes_its_settings_to_the_model_the_data_and_the_loop(monkeypatch):
    seen = {}

    def spy(model, batches, **kwargs):
        seen.update(kwargs, model=model, batch=next(batches))
        return training.History()

    monkeypatch.setattr(training, "train", spy)
    evaluate = lambda m: {}
    config = {"d_model": 8, "d_head": 4, "n_ctx": 5, "d_vocab": 12}
    model, _ = find_median.train_list_model("min", steps=3, batch_size=6, lr=0.01, weights={"sorted": 1}, config=config, seed=4,
                                         evaluate=evaluate, eval_every=2, warmup=1, betas=(0.8, 0.9), clip_grad=None)
    assert (model.cfg.d_model, model.cfg.n_ctx, model.cfg.d_vocab) == (8, 5, 12), "config must reach the model"
    assert seen["model"].model is model and not model.training, "trained at the last position, returned in eval mode"
    assert {k: seen[k] for k in ("steps", "lr", "evaluate", "eval_every", "warmup", "betas", "clip_grad")} == dict(
        steps=3, lr=0.01, evaluate=evaluate, eval_every=2, warmup=1, betas=(0.8, 0.9), clip_grad=None)
    tokens, answers = seen["batch"]
    expected = next(find_median.list_batches(6, {"sorted": 1}, task="min", length=5, vocab=12, seed=4))
    assert torch.equal(tokens, expected[0]) and torch.equal(answers, expected[1]), \
        "batches must come from the weights, task, model shape and seed given"
    other, _ = find_median.train_list_model("median", steps=3, batch_size=6, lr=0.01, config=config, seed=5)
    assert not torch.equal(other.W_E, model.W_E), "the seed must reach the weight initialisation"
    default = next(find_median.list_batches(6, find_median.TRAIN_WEIGHTS, length=5, vocab=12, seed=5))
    assert torch.equal(seen["batch"][0], default[0]), "default weights: find_median.TRAIN_WEIGHTS"


def test_set_seed_seeds_python_numpy_and_torch():
    import random

    training.set_seed(11)
    first = (random.random(), np.random.rand(), torch.rand(()).item())
    training.set_seed(11)
    assert (random.random(), np.random.rand(), torch.rand(()).item()) == first


def test_the_loss_is_computed_in_train_mode_and_one_step_is_allowed(monkeypatch):
    clock = iter([10.0, 12.5])
    monkeypatch.setattr(training, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: next(clock))}))
    model = nn.Linear(2, 2).eval()
    modes = []
    history = training.train(model, iter(lambda: (torch.randn(3, 2), torch.tensor([0, 1, 0])), None), steps=1,
                             loss_fn=lambda m, b: modes.append(m.training) or F.cross_entropy(m(b[0]), b[1]))
    assert modes == [True], "dropout and friends must be on while training"
    assert history.column("step") == [0] and history.seconds == 2.5, "seconds: the clock after training minus before"
