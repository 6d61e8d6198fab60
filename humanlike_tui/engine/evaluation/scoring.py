"""The human-likeness scorecard: does the adapter prefer the human answer, and does it sound human?

Three kinds of figures, for the base model and for the adapter side by side:

- likelihood on held-out pairs: preference accuracy (share of rows where the model gives `chosen` a
  higher mean log-prob per token than `rejected`), the mean margin of that difference, and the loss
  and perplexity on `chosen`;
- style of answers the model writes for the held-out prompts (fixed seed): AI disclaimers, emoji,
  questions back to the user, exclamations, contractions, length, diversity, repetition, stopping;
- the same style figures for the data's own `chosen` and `rejected` answers, as the two ends of the
  scale the adapter should move along;
- the judge's figure: the share of answers a small classifier, trained on the chosen-vs-rejected answers
  of the run's own training rows (never the prompts), calls human-like, with its held-out accuracy
  (judge.py).

Every generated answer is kept (answers.py): beside scorecard.json in the run folder, and in the file
`answers` names.

One base model is loaded; the base side runs under `model.disable_adapter()`, so there is never a
second copy in memory. The metric functions at the top are pure (stdlib only) and unit-tested on
hand-written texts. Engine module: never imports textual.
"""

from __future__ import annotations

import contextlib
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence
from humanlike_tui.config import Config
from humanlike_tui.engine import data as D
from humanlike_tui.engine.data import sources as DS
from humanlike_tui.engine.storage import runs as S
from humanlike_tui.errors import DataError, HumanlikeError, StoreError
from humanlike_tui.events import Emit, EvalProgress, Log, ignore
from humanlike_tui.records import REPEAT_N
from humanlike_tui.engine.evaluation.metrics import loss_figures, preference_figures, style_figures
from humanlike_tui.engine.inference.streaming import cut_answer_text
from humanlike_tui.engine.evaluation.metrics import reward_accuracy
from humanlike_tui.engine.evaluation import answers as A
from humanlike_tui.engine.evaluation import judge as J


SCORECARD_FILE = "scorecard.json"  # in the run folder: the last scorecard of the run's own split


DEFAULT_LIMIT = 200  # held-out rows; the shared data's eval split has ~600, and each row is two generations


class EvaluationCancelled(HumanlikeError):
    """The caller set the stop event; nothing was measured to the end."""


@dataclass
class Scorecard:
    """Figures for base, adapter and the data's own answers; `samples` are (prompt, base, adapter)."""

    run_id: str
    base_model: str
    data_source: str
    rows: int
    prompts: int
    settings: dict[str, Any]
    base: dict[str, float | None]
    adapter: dict[str, float | None]
    reference: dict[str, dict[str, float | None] | None]
    samples: list[tuple[str, str, str]] = field(default_factory=list)
    judge: dict[str, Any] = field(default_factory=dict)  # the judge's accuracy and what it learned from
    answers: list[dict[str, Any]] = field(default_factory=list)  # every generated answer (answers.py records)
    answers_file: str = ""  # the answers' file in the run folder, when kept there with this card

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a non-finite figure (a diverged model) becomes None, as JSON has no NaN.
        The answers themselves are not in it (they go to their own file): only where they are kept."""
        return {"run_id": self.run_id, "base_model": self.base_model, "data_source": self.data_source,
                "rows": self.rows, "prompts": self.prompts, "settings": dict(self.settings),
                "base": _finite(self.base), "adapter": _finite(self.adapter),
                "reference": {k: (_finite(v) if v is not None else None) for k, v in self.reference.items()},
                "samples": [{"prompt": p, "base": b, "adapter": a} for p, b, a in self.samples],
                "judge": dict(self.judge), "answers_file": self.answers_file}


def _finite(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {k: (v if v is None or math.isfinite(v) else None) for k, v in figures.items()}


@dataclass
class _Session:
    """The loaded model and what every measurement needs."""

    cfg: Config
    model: Any
    tok: Any
    device: Any
    precision: Any
    emit: Emit
    stop: threading.Event
    batch_size: int
    pair_logps: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # side -> (chosen, rejected)
    answers: list[dict[str, Any]] = field(default_factory=list)  # every generated answer, in order

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise EvaluationCancelled("evaluation cancelled")

    def autocast(self):
        return self.precision.autocast_context()


def finished_adapter(run_id: str) -> S.Run:
    """The run whose adapter we score; a clear StoreError when there is none yet."""
    run = S.get_run(run_id)
    if not S.is_complete(run.adapter_dir):
        raise StoreError(f"run {run.run_id} has no finished adapter (status: {run.status()}); resume it with "
                         f"`humanlike-tui train --resume {run.run_id}` or score a finished run")
    return run


def data_file_rows(cfg: Config, data: str):
    """(the data config, (rows, counts)) of an --data FILE: checked before any model loads."""
    dcfg = cfg.replace(**{"data.source": str(data), "data.max_rows": 0, "data.mix": []}).data
    if DS.is_picks(data):  # picks:NAME scores the collection's newest fifth, never trained on (data/sources.py)
        counts = D.DataCounts(source=f"{data} (newest fifth)")
        return dcfg, (D.check_rows(DS.heldout_picks_records(data, dcfg, counts), dcfg, counts, True), counts)
    return dcfg, D.load_rows(dcfg, need_rejected=False)


def run_split(cfg: Config, tok) -> tuple[list[D.Example], list[D.Example]]:
    """(training rows, held-out rows) of the run, recomputed exactly as training made them (loading,
    filtering and the prompt-hash split are deterministic)."""
    need_rejected = cfg.train.method != "sft"  # as in training, so the same rows survive the filters
    try:
        rows, counts = D.load_rows(cfg.data, need_rejected=need_rejected)
    except DataError as exc:  # most often a relative data.source and another working folder
        raise DataError(f"{exc}\n(the run's held-out rows come from its data.source {cfg.data.source!r}: "
                        "run eval from the folder the training ran in, or score a file with --data FILE)"
                        ) from None
    examples = D.tokenize_rows(rows, tok, cfg.data, counts, need_rejected)
    return D.split_by_prompt(examples, cfg.data.eval_fraction, cfg.train.seed)


def heldout_examples(cfg: Config, tok, data: str | None = None, limit: int | None = DEFAULT_LIMIT,
                     split: tuple[list[D.Example], list[D.Example]] | None = None) -> tuple[list[D.Example], str]:
    """The rows to score: the run's own eval split (`split`, when run_split already made it), or every
    usable row of `data`."""
    if data:
        dcfg, (rows, counts) = data_file_rows(cfg, data)
        examples = D.tokenize_rows(rows, tok, dcfg, counts, need_rejected=False)
        source = str(data)
    else:
        _, examples = split or run_split(cfg, tok)
        source = cfg.data.source
        if not examples:
            raise DataError(f"run data {source}: no held-out rows (data.eval_fraction = "
                            f"{cfg.data.eval_fraction}); give rows to score with --data FILE")
    return (examples[:limit] if limit else examples), source


def _answer_logps(s: _Session, exs: list[D.Example], answer: str) -> list[float]:
    """Summed log-prob of each example's `answer` ('chosen' or 'rejected') given its prompt."""
    import torch

    from humanlike_tui.engine.logprobs import answer_logprobs, per_row_sum

    seqs = [D.sft_tensors(e, False, answer) for e in exs]
    ids, labels, att = D.pad_batch(seqs, s.tok.pad_token_id)
    with torch.no_grad(), s.autocast():
        logp, rows = answer_logprobs(s.model, ids, labels, att, s.device)
        sums = per_row_sum(logp.float(), rows, len(exs))
    return [float(x) for x in sums.cpu()]


def likelihood_scores(s: _Session, exs: list[D.Example], side: str) -> dict[str, float | None]:
    """Preference accuracy and margin on rows with a rejected answer, loss and perplexity on chosen."""
    pairs = [e for e in exs if e.rejected_ids is not None]
    chosen: list[float] = []
    rejected: list[float] = []
    total = len(exs) + len(pairs)
    for i in range(0, len(exs), s.batch_size):
        s.check_stop()
        batch = exs[i:i + s.batch_size]
        chosen += _answer_logps(s, batch, "chosen")
        with_rej = [e for e in batch if e.rejected_ids is not None]
        if with_rej:
            rejected += _answer_logps(s, with_rej, "rejected")
        s.emit(EvalProgress(side, "likelihood", len(chosen) + len(rejected), total))
    chosen_pairs = [c for c, e in zip(chosen, exs) if e.rejected_ids is not None]
    s.pair_logps[side] = (chosen_pairs, rejected)
    pref = preference_figures(chosen_pairs, [len(e.chosen_ids) for e in pairs],
                              rejected, [len(e.rejected_ids or ()) for e in pairs])
    return pref | loss_figures(sum(chosen), sum(len(e.chosen_ids) for e in exs))


def generate_answers(s: _Session, prompts: list[str], max_new_tokens: int, side: str) -> tuple[list[str], list[bool]]:
    """Answers to `prompts`, formatted exactly as in training, in left-padded batches with a fixed seed.

    The seed is set once before the first batch, so the base and the adapter draw the same random
    numbers in the same order and differ only by their weights. Returns (texts, stopped_with_eos)."""
    import torch

    g = s.cfg.generate
    torch.manual_seed(g.seed)
    sample = g.temperature > 0
    knobs = dict(do_sample=True, temperature=g.temperature, top_p=g.top_p) if sample else dict(do_sample=False)
    eos, pad = s.tok.eos_token_id, s.tok.pad_token_id
    texts: list[str] = []
    stopped: list[bool] = []
    for i in range(0, len(prompts), s.batch_size):
        s.check_stop()
        encoded = [s.tok(D.format_prompt(p, s.cfg.data.template, s.tok, s.cfg.data.system_prompt),
                         add_special_tokens=False)["input_ids"] for p in prompts[i:i + s.batch_size]]
        ids, att = _left_pad(encoded, pad)
        with torch.no_grad(), s.autocast():
            out = s.model.generate(input_ids=ids.to(s.device), attention_mask=att.to(s.device),
                                   max_new_tokens=max_new_tokens, repetition_penalty=g.repetition_penalty,
                                   pad_token_id=pad, eos_token_id=eos, use_cache=True, **knobs)
        for row in out[:, ids.shape[1]:].tolist():
            text, ended = _cut_answer(row, eos, s.tok, D.resolve_template(s.cfg.data.template, s.tok))
            s.answers.append(A.answer_record(prompts[len(texts)], side, text, _new_tokens(row, eos), ended))
            texts.append(text)
            stopped.append(ended)
        s.emit(EvalProgress(side, "generate", len(texts), len(prompts)))
    return texts, stopped


def _left_pad(seqs: list[list[int]], pad_id: int):
    """Generation continues every row at the same column, so prompts are padded on the left."""
    import torch

    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, x in enumerate(seqs):
        ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
        att[i, width - len(x):] = 1
    return ids, att


def _new_tokens(new_ids: list[int], eos: int) -> int:
    """How many tokens the answer took: up to its end token, or all of them when it ran into the limit."""
    return new_ids.index(eos) if eos in new_ids else len(new_ids)


def _cut_answer(new_ids: list[int], eos: int, tok, template: str) -> tuple[str, bool]:
    """The answer text up to EOS (and before the instruct template's end marker); whether EOS came."""
    ended = eos in new_ids
    if ended:
        new_ids = new_ids[: new_ids.index(eos)]
    return cut_answer_text(tok.decode(new_ids, skip_special_tokens=True), template), ended


def _load(run: S.Run, emit: Emit, stop: threading.Event, batch_size: int) -> _Session:
    import torch

    from humanlike_tui.engine import models as M

    cfg = run.config()
    precision = M.resolve_precision(cfg, "cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device("cuda", 0) if precision.device == "cuda" else torch.device("cpu")
    base, tok = M.load_base_model(cfg, precision, 0, lambda m: emit(Log(m)))
    model = M.load_adapter(base, run.adapter_dir, cfg.model.name)
    model.eval()
    return _Session(cfg, model, tok, device, precision, emit, stop, batch_size)


def _holds_adapter(loaded: Any, run: S.Run) -> bool:
    """Whether `loaded` (an inference.generator.Generator) has this run's adapter on its base."""
    if loaded is None or not getattr(loaded, "adapter_dir", ""):
        return False
    try:
        return Path(loaded.adapter_dir).resolve() == Path(run.adapter_dir).resolve()
    except OSError:
        return False


@contextlib.contextmanager
def _session(run: S.Run, emit: Emit, stop: threading.Event, batch_size: int, loaded: Any = None
             ) -> Iterator[_Session]:
    """The model to score: the one `loaded` already holds for this run (borrowed under its lock: no
    second base model in memory, the chat waits meanwhile), else a fresh load freed afterwards."""
    if _holds_adapter(loaded, run):
        with loaded.lock:
            if loaded.model is not None:  # not closed while we waited for the lock
                from humanlike_tui.engine import models as M

                emit(Log(f"scoring with the model already loaded for {run.run_id} (no second copy)"))
                device = next(loaded.model.parameters()).device
                precision = M.resolve_precision(loaded.config, device.type)
                loaded.model.eval()
                yield _Session(loaded.config, loaded.model, loaded.tok, device, precision, emit, stop, batch_size)
                return
    emit(Log(f"loading {run.run_id} for the scorecard"))
    s = _load(run, emit, stop, batch_size)
    try:
        yield s
    finally:
        _free(s)


def score_side(s: _Session, exs: list[D.Example], prompts: list[str], max_new_tokens: int,
               side: str) -> tuple[dict[str, float | None], list[str]]:
    """Every model figure for one side ('base' or 'adapter') of the currently active weights."""
    s.emit(Log(f"{side}: likelihood of chosen and rejected on {len(exs)} rows"))
    figures = likelihood_scores(s, exs, side)
    s.emit(Log(f"{side}: answering {len(prompts)} held-out prompts (up to {max_new_tokens} new tokens)"))
    texts, stopped = generate_answers(s, prompts, max_new_tokens, side)
    return figures | style_figures(texts, stopped), texts


def scorecard(run_id: str, data: str | None = None, limit: int | None = DEFAULT_LIMIT,
              max_new_tokens: int | None = None, emit: Emit = ignore, stop: threading.Event | None = None,
              batch_size: int = 16, n_samples: int = 3, loaded: Any = None,
              answers: str | Path | None = None) -> Scorecard:
    """Score run `run_id`'s adapter against its base on held-out rows (the run's eval split, or `data`).

    The card of the run's own split is also saved in the run folder (see last_scorecard), with every
    generated answer beside it (last_answers); so is the card of `data` when `answers` is given, so the
    Adapters screen can open those answers too. `answers`: also write the answers to this JSON-lines file.
    Emits Log and EvalProgress events; raises StoreError for an unknown or unfinished run, DataError for
    unusable data, InputError for an `answers` path that cannot be written, EvaluationCancelled when
    `stop` is set. Long work: call it from a worker thread.
    loaded: a Generator (the chat's) that may already hold this run's adapter; its model is borrowed."""
    stop = stop or threading.Event()
    run = finished_adapter(run_id)
    if answers is not None:
        answers = A.check_answers_path(answers)  # before the model loads, like a bad --data file
    if data:
        data_file_rows(run.config(), data)  # a bad file fails now, not after the model has loaded
    with _session(run, emit, stop, batch_size, loaded) as s:
        split = None if data else run_split(s.cfg, s.tok)
        exs, source = heldout_examples(s.cfg, s.tok, data, limit, split)
        judge, judge_info = _train_judge(s, split)
        prompts = list(dict.fromkeys(e.prompt for e in exs))
        max_new = max_new_tokens or s.cfg.generate.max_new_tokens
        with s.model.disable_adapter():  # the same weights, LoRA off: the base model, no second copy
            base, base_texts = score_side(s, exs, prompts, max_new, "base")
        adapter, adapter_texts = score_side(s, exs, prompts, max_new, "adapter")
    base["reward_accuracy"] = None  # the base is the reference: its implicit reward is 0 on every answer
    adapter["reward_accuracy"] = reward_accuracy(s.pair_logps["adapter"], s.pair_logps["base"])
    rows = _rows_of(exs, s.tok, D.resolve_template(s.cfg.data.template, s.tok))
    reference = {"chosen": style_figures([r[0] for r in rows]),
                 "rejected": style_figures([r[1] for r in rows if r[1] is not None]) if any(
                     r[1] is not None for r in rows) else None}
    _judge_figures(judge, s.answers, base, adapter, reference, rows)
    g = s.cfg.generate
    settings = {"max_new_tokens": max_new, "seed": g.seed, "temperature": g.temperature, "top_p": g.top_p,
                "repetition_penalty": g.repetition_penalty, "limit": limit, "repeat_n": REPEAT_N,
                "split": "file" if data else "run eval split"}
    samples = list(zip(prompts, base_texts, adapter_texts))[:n_samples]
    card = Scorecard(run.run_id, s.cfg.model.name, source, len(exs), len(prompts), settings, base, adapter,
                     reference, samples, judge_info, s.answers)
    if answers is not None:
        A.write_answers(answers, card.answers)
        emit(Log(f"{len(card.answers)} answers written to {answers}"))
    if data is None or answers is not None:  # keep it, so the Adapters screen can show it and its answers later
        A.write_answers(run.run_dir / A.ANSWERS_FILE, card.answers)  # first: a card never names missing answers
        card.answers_file = A.ANSWERS_FILE
        S.write_json(run.run_dir / SCORECARD_FILE, card.to_dict())
    return card


def _train_judge(s: _Session, split: tuple[list[D.Example], list[D.Example]] | None
                 ) -> tuple[J.Judge | None, dict[str, Any]]:
    """The judge of this run: trained on the answers (never the prompts) of the rows the adapter trained on.
    No judge (and a note saying why) when those rows cannot be read or have no rejected answers."""
    try:
        train = (split or run_split(s.cfg, s.tok))[0]
    except DataError as exc:
        return None, J.unavailable(f"the run's training rows cannot be read: {exc}")
    template = D.resolve_template(s.cfg.data.template, s.tok)
    rows = J.sample_pairs([e for e in train if e.rejected_ids is not None], s.cfg.train.seed)  # decode no more
    pairs = [J.Pair(chosen, rejected or "", getattr(e, "group", "") or e.prompt)
             for e, (chosen, rejected) in zip(rows, _rows_of(rows, s.tok, template))]
    try:
        judge = J.train_judge(pairs, s.cfg.train.seed)
    except ValueError as exc:
        return None, J.unavailable(str(exc))
    s.emit(Log(f"judge: {judge.accuracy:.1%} right on {judge.heldout_answers} held-out answers of the training rows "
               f"(trained on {judge.train_answers} answers in {judge.seconds:.1f} s)"))
    return judge, judge.describe()


def _judge_figures(judge: J.Judge | None, records: list[dict[str, Any]], base: dict, adapter: dict,
                   reference: dict, rows: list[tuple[str, str | None]]) -> None:
    """judge_human_rate for each side and the data's own answers; each answer record gets its probability."""
    if judge is not None:
        for record, p in zip(records, judge.human_probability([r["text"] for r in records])):
            record["judge_human"] = round(p, 4)
    for side, figures in (("base", base), ("adapter", adapter)):
        texts = [r["text"] for r in records if r["side"] == side]
        figures["judge_human_rate"] = judge.human_rate(texts) if judge is not None else None
    for key, texts in (("chosen", [r[0] for r in rows]), ("rejected", [r[1] for r in rows if r[1] is not None])):
        if reference.get(key) is not None:
            reference[key]["judge_human_rate"] = judge.human_rate(texts) if judge is not None else None


def last_scorecard(run_id: str) -> dict[str, Any] | None:
    """The last saved scorecard of a run (Scorecard.to_dict() shape), or None. Stdlib only: cheap for a UI."""
    data = S.read_json(S.get_run(run_id).run_dir / SCORECARD_FILE)
    return data or None


def last_answers(run_id: str) -> list[dict[str, Any]] | None:
    """Every generated answer of the run's last saved scorecard (answers.py records), or None when that
    card kept none (a card from before answers were kept). Stdlib only."""
    run = S.get_run(run_id)
    name = (S.read_json(run.run_dir / SCORECARD_FILE) or {}).get("answers_file")
    if not name:
        return None
    return A.read_answers(run.run_dir / Path(str(name)).name)  # a name in the run folder, never a path out of it


def _rows_of(exs: list[D.Example], tok, template: str) -> list[tuple[str, str | None]]:
    """The data's own answers as text, decoded from the kept examples (byte-level tokenizers give the
    text back, up to whitespace), so the reference rows are exactly the rows the models were scored on."""
    def text(ids: Sequence[int]) -> str:
        return _cut_answer(list(ids), tok.eos_token_id, tok, template)[0]

    return [(text(e.chosen_ids), text(e.rejected_ids) if e.rejected_ids is not None else None) for e in exs]


def _free(s: _Session) -> None:
    import gc

    import torch

    s.model = None
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
