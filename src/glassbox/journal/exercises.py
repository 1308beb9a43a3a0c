"""A notebook's exercises: stubs in the notebook, solutions, checkers and answers beside it.

A "write it yourself" exercise shows a Hint (folded) and then a stub the reader fills in:

    def my_ov_table(model) -> torch.Tensor:
        \"\"\"[token position logit]: ...\"\"\"
        raise NotImplementedError("your code here")


    exercises.check(my_ov_table, model)

Its solution, its checker and the folded answers of the "predict, then run" exercises live in
`notebooks/solutions/NN.py` (NN: the notebook's number), where a reader who is stuck can open them:

    def my_ov_table(model): ...                 # the solution, same name as the stub; it uses only names
                                                # the notebook has too (the tests run it in the notebook)
    def check_my_ov_table(fn, model): ...       # asserts, each message naming what differs
    ANSWERS = {1: \"\"\"... {recorded_key:.1%} ...\"\"\"}   # Markdown, filled from this run's findings

`check(fn, *args)` runs `check_<name>(fn, *args)`. A stub that is still a stub (it raises
NotImplementedError) is "not attempted yet": the run goes on, and the reference solution is checked in
its place, so every run of the notebook still tests every checker. A wrong answer stops the cell with
the checker's message. Either way the models passed to the checker are left as they were found (hooks
a failing answer left behind are removed, parameters it changed restored).

`answer(n)` shows `ANSWERS[n]` folded under "Answer", so the notebook's source (all GitHub and Colab
show of a code cell) holds no explanation, and "predict, then run" cells record their numbers with
`findings.record(..., show=False)`, so nothing above the fold gives the answer away.
"""
import importlib.util
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from glassbox.journal import contract, findings, paths

SOLUTION_DIR = paths.NOTEBOOK_DIR / "solutions"
NOT_ATTEMPTED = "not attempted yet"
CORRECT = "correct"
_loaded: dict[Path, ModuleType] = {}


def solutions_path(stem: str) -> Path:
    """Where notebook `stem`'s solutions, checkers and answers live: notebooks/solutions/NN.py."""
    return SOLUTION_DIR / f"{stem[:2]}.py"


def solutions(stem: str | None = None) -> ModuleType:
    """The solutions module of notebook `stem` (default: the notebook now running), loaded once."""
    if stem is None:
        run = contract.current()
        if run is None:
            raise RuntimeError("no notebook run: call glassbox.start(stem, smoke=SMOKE, seed=SEED) first")
        stem = run.stem
    path = solutions_path(stem)
    if path not in _loaded:
        if not path.is_file():
            raise FileNotFoundError(f"no solutions file {paths.shown(path)} for notebook {stem}")
        spec = importlib.util.spec_from_file_location(f"glassbox_solutions_{stem[:2]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _loaded[path] = module
    return _loaded[path]


def check(fn: Callable, *args: Any, **kwargs: Any) -> str:
    """Check the reader's `fn` with the checker `check_<fn.__name__>` from the notebook's solutions file.
    Returns CORRECT; or NOT_ATTEMPTED while `fn` still raises NotImplementedError (then the reference
    solution is checked instead). A wrong answer raises the checker's AssertionError."""
    module = solutions()
    name = fn.__name__
    checker, reference = getattr(module, f"check_{name}", None), getattr(module, name, None)
    if checker is None or reference is None:
        raise AttributeError(f"{paths.shown(Path(module.__file__))} has no {name}() and check_{name}(): "
                             "is the function named as in the exercise?")
    try:
        with _as_found(args, kwargs):
            checker(fn, *args, **kwargs)
    except NotImplementedError:
        with _as_found(args, kwargs):
            checker(reference, *args, **kwargs)  # a checker that rejects the reference is a bug: let it raise
        print(f"{name}: {NOT_ATTEMPTED}. Fill in the function and run this cell again; stuck? the Hint above, "
              f"then {paths.shown(Path(module.__file__))}.")
        return NOT_ATTEMPTED
    print(f"{name}: {CORRECT}.")
    return CORRECT


def answer(number: int):
    """The folded answer of exercise `number`: `ANSWERS[number]` from the solutions file, its `{key}`
    fields filled from this run's findings."""
    answers = getattr(solutions(), "ANSWERS", {})
    if number not in answers:
        raise KeyError(f"the solutions file has no ANSWERS[{number}]; it has {sorted(answers)}")
    return findings.markdown(f"<details><summary>Answer</summary>\n\n{answers[number].strip()}\n</details>\n")


@contextmanager
def _as_found(args: tuple, kwargs: dict) -> Iterator[None]:
    """Leave every torch module among the arguments as it was: remove hooks added meanwhile, restore
    parameters and buffers changed meanwhile, and the training flag."""
    import torch

    models = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.nn.Module)]
    with ExitStack() as stack:
        for model in models:
            stack.enter_context(_model_as_found(model))
        yield


@contextmanager
def _model_as_found(model) -> Iterator[None]:
    import torch

    hooks = {m: (set(m._forward_hooks), set(m._forward_pre_hooks), set(m._backward_hooks)) for m in model.modules()}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    training = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        for m, (fwd, pre, bwd) in hooks.items():
            for now, before in ((m._forward_hooks, fwd), (m._forward_pre_hooks, pre), (m._backward_hooks, bwd)):
                for key in set(now) - before:
                    del now[key]
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if k in state and not torch.equal(v, state[k]):
                    v.copy_(state[k])
        for m, flag in training.items():
            m.training = flag
