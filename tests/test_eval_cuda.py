"""The evaluator on a CUDA GPU gives plain ``generate`` greedy's text, in the same dtype.

Marked ``cuda``: skipped where no GPU is visible (tests/conftest.py). fp32 (with TF32 off, as
fp32 means) must match example by example, on a trained model (fast path) and an untrained one
(decode path), except where greedy itself is a coin toss: a GPU picks different kernels for a
batch of rows than for one row, and they round differently, so where the two best tokens of
``generate``'s own chain are within ``TIE`` of each other (an untrained model has such near-ties
in most answers) the other token may win. A difference anywhere else fails, and says how far
apart the two best tokens were. In bf16 the rounding is coarser: rprim and ``generate`` (both
bf16) must agree on at least 90% of the examples.
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import rprim.primitives as P  # noqa: E402
from rprim.evaluators import evaluate  # noqa: E402
from rprim.evaluators.engine.backend import Request  # noqa: E402
from rprim.evaluators.engine.hf import HFBackend, plain_greedy  # noqa: E402
from rprim.evaluators.engine.tokens import decide_bos, encode  # noqa: E402
from test_eval_helpers import corpus, tiny_model, tokenizer  # noqa: E402

pytestmark = pytest.mark.cuda
TIE = 1e-3  # logit gap between greedy's two best tokens under which fp32 kernels may disagree
TASKS = ["varassign-code-d0", "arithmetic", "psm-calc", "copying-words"]


def _train_on_gpu(tok, steps: int, seed: int = 0):
    model = tiny_model(tok, seed=seed, train_steps=0, hidden=64, heads=4, kv_heads=2).cuda()
    if steps:
        ids = tok("".join(corpus()))["input_ids"]
        data = torch.tensor(ids[: (len(ids) // 128) * 128], device="cuda").view(-1, 128)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator(device="cuda").manual_seed(seed)
        model.train()
        for _ in range(steps):
            batch = data[torch.randint(len(data), (32,), generator=g, device="cuda")]
            model(input_ids=batch, labels=batch).loss.backward()
            opt.step()
            opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module", params=["bpe", "sp"])
def models(request):
    tok = tokenizer(request.param)
    return tok, _train_on_gpu(tok, 300), _train_on_gpu(tok, 0, seed=5)


@pytest.fixture(autouse=True)
def full_fp32():
    """fp32 matmuls in full precision (another test may have switched TF32 on)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    yield
    torch.backends.cuda.matmul.allow_tf32 = before[0]
    torch.set_float32_matmul_precision(before[1])


def _requests(n: int = 8) -> list[Request]:
    return [Request(r["prompt"], r["target_delimiter"] + r["target"], tuple(r["until"]))
            for name in TASKS for r in P.get(name).generate(n, seed=3, shots=2)]


def _self_targets(model, tok, reqs, budget):
    """The model's own answers as targets: the fast path end to end."""
    said = [plain_greedy(model, tok, r.prompt, r.until, budget) for r in reqs]
    return [Request(r.prompt, s, r.until) for r, s in zip(reqs, said)], said


def _closest_call(model, tok, prompt: str, budget: int) -> float:
    """The smallest gap between the two best logits along greedy's chain after ``prompt`` (one
    row, no cache, float64 comparison): how close greedy came to picking another token."""
    bos = decide_bos(tok, model.config)
    ids = encode(tok, [prompt], bos.token_id if bos.add else None)[0]
    gaps = []
    with torch.no_grad():
        for _ in range(budget):
            top = model(torch.tensor([ids], device=model.device)).logits[0, -1].double().topk(2)
            gaps.append(float(top.values[0] - top.values[1]))
            ids.append(int(top.indices[0]))
    return min(gaps)


def _same_but_near_ties(model, tok, reqs, got: list[str], want: list[str], budget: int = 10) -> None:
    """``got == want``, except rows where greedy's chain holds a near-tie (module doc)."""
    off = [(r, a, b) for r, a, b in zip(reqs, got, want) if a != b]
    assert len(off) <= len(reqs) // 10, f"{len(off)} of {len(reqs)} rows differ: {off[:3]}"
    for r, a, b in off:
        gap = _closest_call(model, tok, r.prompt, budget)
        assert gap < TIE, (f"rprim {a!r} but generate {b!r} after ...{r.prompt[-30:]!r}, where greedy's "
                           f"two best tokens are never closer than {gap:.1e}: not a rounding tie")


def test_fast_and_decode_paths_match_generate_on_cuda_fp32(models):
    tok, trained, untrained = models
    reqs = _requests()
    for model in (trained, untrained):  # answers in format / never stops (decode path)
        ref = [plain_greedy(model, tok, r.prompt, r.until, 10) for r in reqs]
        be = HFBackend(model, tok, batch_size="auto")
        assert be.device.type == "cuda"
        _same_but_near_ties(model, tok, reqs, [g.text for g in be.greedy(reqs, 10)], ref)
        got = [g.text for g in HFBackend(model, tok, batch_size=5).greedy(reqs, 10)]
        _same_but_near_ties(model, tok, reqs, got, ref)
        own, said = _self_targets(model, tok, reqs[::2], 10)
        be = HFBackend(model, tok, batch_size=7)
        _same_but_near_ties(model, tok, reqs[::2], [g.text for g in be.greedy(own, 10)], said)
        if model is trained:  # an untrained model's own answers run to the budget in tokens
            assert be.stats["fast"] > 0  # that need not re-encode the same way: decoded, as exact


def test_bf16_agrees_with_generate_in_bf16(models):
    tok, trained, _ = models
    model = trained.to(torch.bfloat16)
    try:
        reqs = _requests()
        ref = [plain_greedy(model, tok, r.prompt, r.until, 10) for r in reqs]
        got = [g.text for g in HFBackend(model, tok).greedy(reqs, 10)]
        assert sum(a == b for a, b in zip(got, ref)) >= 0.9 * len(ref)
    finally:
        trained.float()


def test_evaluate_on_cuda_matches_generate(models):
    tok, trained, _ = models
    res = evaluate(trained, tokenizer=tok, tasks=["varassign-basic-d0", "psm-calc"], shots=1, n=16)
    assert res.meta["device"].startswith("cuda")
    for name, rows in res.samples.items():
        task = P.get(name)
        budget = res.tasks[name]["max_new_tokens"]
        for row in rows:
            want = plain_greedy(trained, tok, row["prompt"], task.until, budget)
            assert row["prediction"] == want.strip()


def test_auto_batch_fills_the_gpu(models):
    tok, trained, _ = models
    be = HFBackend(trained, tok)
    assert be._auto_batch(300, 40) >= 256  # a tiny model: the cap, not one row
