"""Notebook 01's exercises: solutions, checkers and folded answers (see glassbox.journal.exercises).

Open this file when stuck; the notebook runs each checker against your function, or, while your
function is still a stub, against the solution here.
"""
import torch

from glassbox import ablation, hooks, probes


# ---- 2. Integrated gradients


def my_integrated_gradients(model, x: torch.Tensor, target: torch.Tensor, n_steps: int) -> torch.Tensor:
    alphas = (torch.arange(n_steps) + 0.5) / n_steps
    path = (alphas.view(-1, 1, 1, 1) * x).flatten(0, 1).requires_grad_(True)  # [n_steps * batch, 28, 28]
    logits = model(path).gather(1, target.repeat(n_steps)[:, None])
    (grads,) = torch.autograd.grad(logits.sum(), path)
    return x * grads.reshape(n_steps, *x.shape).mean(0)


def check_my_integrated_gradients(fn, model, x: torch.Tensor, target: torch.Tensor, n_steps: int) -> None:
    from captum.attr import IntegratedGradients

    got = fn(model, x, target, n_steps)
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    got = got.detach()
    ig = IntegratedGradients(model)
    ref, left = (ig.attribute(x, baselines=0 * x, target=target, n_steps=n_steps, method=m) for m in ("riemann_middle", "riemann_left"))
    x_grad = x.clone().requires_grad_(True)
    (grad_at_x,) = torch.autograd.grad(model(x_grad).gather(1, target[:, None]).sum(), x_grad)
    same = lambda other: torch.allclose(got, other, atol=1e-5)
    assert got.shape == ref.shape, f"expected one attribution per pixel, shape {tuple(ref.shape)}; got {tuple(got.shape)}"
    assert not same(x * grad_at_x), "that is gradient x input at x alone: average the gradients along the path alpha * x"
    assert not same(ref * n_steps), "you summed the gradients over the steps: average them (divide by n_steps)"
    assert not torch.allclose(got * x, ref, atol=1e-5) or same(ref), "multiply the averaged gradient by (x - baseline) = x"
    assert not same(left), "those are left end points (alpha = k / n): use the midpoints (k + 1/2) / n"
    assert same(ref), f"expected attributions summing to {ref.sum((1, 2))[:3].tolist()}..., got {got.sum((1, 2))[:3].tolist()}..."


# ---- 3. One neuron's per-class accuracy drop, with a forward hook that patches its output


def my_class_accuracy_drop(model, layer: str, neuron: int, x: torch.Tensor, y: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    def per_class(pred): return torch.stack([(pred[y == k] == k).float().mean() for k in range(10)])
    module = dict(model.named_modules())[layer]
    with torch.no_grad():
        before = per_class(model(x).argmax(-1))
        handle = module.register_forward_hook(lambda m, inputs, out: out.index_fill(1, torch.tensor([neuron]), float(value)))
        try:
            after = per_class(model(x).argmax(-1))
        finally:
            handle.remove()
    return before - after


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def check_my_class_accuracy_drop(fn, model, layer: str, neuron: int, x: torch.Tensor, y: torch.Tensor, value: torch.Tensor) -> None:
    hooks_before = _hooks(model)
    got = fn(model, layer, neuron, x, y, value)
    assert _hooks(model) == hooks_before, \
        "your hook is still on the model: keep the handle register_forward_hook returns and call handle.remove()"
    assert isinstance(got, torch.Tensor), f"return a tensor, got {type(got).__name__}"
    with hooks.capture(model, layer) as acts:
        model(x[:1])
    values = torch.full(acts[layer].shape[1:], float(value))  # `value` for every neuron of the layer; one is used
    want, if_zero = (ablation.class_accuracy_drop(model, layer, x, y, v, neurons=[neuron])[:, 0] for v in (values, None))
    assert got.shape == want.shape, f"expected one drop per class, shape {tuple(want.shape)}; got {tuple(got.shape)}"
    same = lambda other: torch.allclose(got.detach().float(), other, atol=1e-6)
    for mistake, message in ((-want, "wrong sign: the drop is accuracy before minus accuracy after (positive: the class needs the neuron)"),
                             (if_zero, "you set the neuron to 0: replace it by `value`, its mean over the training images"),
                             (100 * want, "those are percentage points: return fractions (0.01 is one point)")):
        assert same(want) or not same(mistake), message
    assert same(want), f"expected {want.numpy().round(4)}, got {got.detach().numpy().round(4)}: accuracy within each true class, from the argmax"


# ---- 4. A linear probe with its control


def my_probe_with_control(train: torch.Tensor, labels_train: torch.Tensor, test: torch.Tensor, labels_test: torch.Tensor,
                          C: float, seed: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    train, test = train.double(), test.double()
    mean, std = train.mean(0), train.std(0, correction=0)  # over the training images: one per neuron
    std[std == 0] = 1  # neurons silent on every training image stay as they are
    scaled_train, scaled_test = (train - mean) / std, (test - mean) / std

    def accuracy(labels: torch.Tensor) -> float:
        probe = LogisticRegression(C=C, max_iter=300).fit(scaled_train.numpy(), labels.numpy())
        return float((probe.predict(scaled_test.numpy()) == labels_test.numpy()).mean())

    shuffled = labels_train[torch.randperm(len(labels_train), generator=torch.Generator().manual_seed(seed))]
    return {"probe": accuracy(labels_train), "control": accuracy(shuffled)}


def check_my_probe_with_control(fn, train: torch.Tensor, labels_train: torch.Tensor, test: torch.Tensor,
                                labels_test: torch.Tensor, C: float, seed: int) -> None:
    got = fn(train, labels_train, test, labels_test, C, seed)
    assert isinstance(got, dict) and set(got) == {"probe", "control"}, \
        f'return {{"probe": accuracy, "control": accuracy}}, got {got!r:.80}: a probe means little without its control'
    assert all(isinstance(v, float) for v in got.values()), f"return Python floats (float(...)), got {got!r:.80}"
    # Two made-up splits on which a mistake is plain (8 features, 400 training and 400 test rows):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(400, 8, generator=g), torch.randn(400, 8, generator=g)
    moved = fn(a, (a[:, 0] > 0).long(), b, (b[:, 1] > 0).long(), 1.0, seed)  # the rule changes between the splits
    assert moved["probe"] < 0.75, ("your probe reads a rule found only in the test split: fit it on the training split, "
                                   "then score it on the test split (you fitted the probe on the test split)")
    base, size = torch.rand(800, 8, generator=g) + 0.5, 1 + 2 * (torch.rand(800, generator=g) > 0.5).long()
    scaled = base * size[:, None]  # the label is each row's overall size
    sized = fn(scaled[:400], size[:400] // 3, scaled[400:], size[400:] // 3, 1.0, seed)
    assert sized["probe"] > 0.9, ("wrong axis: standardise each neuron (a column) over the training images, mean(0) and "
                                  "std(0); standardising each image over its neurons erases what the probe should read")
    perm = torch.randperm(len(labels_train), generator=torch.Generator().manual_seed(seed))
    want = {"probe": probes.fit_probe(train, labels_train, test, labels_test, C=C).accuracy,
            "control": probes.fit_probe(train, labels_train[perm], test, labels_test, C=C).accuracy}
    slack = 1.5 / len(labels_test)  # one test image either way
    assert abs(got["control"] - want["probe"]) > slack, \
        "your control reads the real labels: fit the same probe on the shuffled training labels"
    assert abs(got["probe"] - want["probe"]) <= slack, (
        f"probe: expected {want['probe']:.4f} (glassbox.probes.fit_probe), got {got['probe']:.4f}: standardise with the "
        "training split's mean and std, LogisticRegression(C=C, max_iter=300), accuracy on the test split")
    assert abs(got["control"] - want["control"]) <= slack, (
        f"control: expected {want['control']:.4f}, got {got['control']:.4f}: shuffle the training labels only, with "
        "torch.randperm(len(labels_train), generator=torch.Generator().manual_seed(seed)), and score on the real test labels")


# ---- Folded answers of the "predict, then run" exercises, filled from the run's findings

ANSWERS = {
    1: """
Zero-ablating {exercise_zero_ablation[neuron]} costs the {exercise_zero_ablation[class]}s {exercise_zero_ablation[drops_text][zero]}
of accuracy, against {exercise_zero_ablation[drops_text][mean]} for mean ablation (and
{exercise_zero_ablation[drops_text][resample]} for resample ablation). The neuron is evidence for
{exercise_zero_ablation[class]}: on training {exercise_zero_ablation[class]}s it averages {exercise_zero_ablation[mean_on_class]:.2f}, against
{exercise_zero_ablation[training_mean]:.2f} over all digits, although it is silent on {exercise_zero_ablation[silent_on_class]:.0%} of the
{exercise_zero_ablation[class]}s (where it fires, it fires strongly). Zero is not an unusual value for it (it outputs 0 on {exercise_zero_ablation[zero_share]:.0%} of all training images), but 0 on
*every* image says its pattern is absent from every {exercise_zero_ablation[class]} too, and lowers the next layer's average input
by its mean times its outgoing weights. Mean ablation gives every image {exercise_zero_ablation[training_mean]:.2f}: the next
layer's input keeps its average over the data; the {exercise_zero_ablation[class]}s where it fired keep a little of their push,
and those where it was silent even gain some. Resample ablation gives each image the neuron's value on a random other
training image: mostly 0, now and then a large value, so its average over the data is kept as well. What an ablation
costs depends on what replaces the neuron; the matrix above uses the mean because it removes only the neuron's variation
from image to image, not its average contribution.
""",
}
