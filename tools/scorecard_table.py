"""Render `humanlike-tui eval --json` outputs of several runs on the same held-out rows as one markdown table
(base, then each run's adapter, then the data's own chosen/rejected answers) and their sample answers side by
side. Usage: python tools/scorecard_table.py A.eval.json B.eval.json ... > table.md"""

from __future__ import annotations

import json
import sys

from humanlike_tui.records import FIGURES, format_figure, judge_caption


def load(paths: list[str]) -> list[dict]:
    cards = [json.loads(open(p, encoding="utf-8").read()) for p in paths]
    first = cards[0]
    for card in cards[1:]:  # the comparison only means something on the same rows and answer settings
        assert (card["data_source"], card["rows"], card["settings"]) == (first["data_source"], first["rows"],
                                                                         first["settings"]), card["run_id"]
    return cards


def table(cards: list[dict]) -> str:
    head = ["figure", "base"] + [c["run_id"] for c in cards] + ["data: chosen", "data: rejected"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = cards[0]["reference"]
    for key, label, _ in FIGURES:
        cells = [format_figure(key, cards[0]["base"].get(key))]
        cells += [format_figure(key, c["adapter"].get(key)) for c in cards]
        cells += [format_figure(key, (ref.get(side) or {}).get(key)) for side in ("chosen", "rejected")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(judge_row(cards))
    return "\n".join(lines)


def judge_row(cards: list[dict]) -> str:
    """Each run has its own judge (trained on its own training rows): its held-out accuracy under its column;
    the base column and the data's columns were judged by the first run's judge."""
    def accuracy(card: dict) -> str:
        value = (card.get("judge") or {}).get("accuracy")
        return "—" if value is None else f"{value:.1%}"

    cells = [accuracy(cards[0])] + [accuracy(c) for c in cards] + [accuracy(cards[0])] * 2
    return "| judge's own accuracy (held-out training answers) | " + " | ".join(cells) + " |"


def samples(cards: list[dict], width: int = 400) -> str:
    out = []
    for i, s in enumerate(cards[0]["samples"]):
        out.append(f"**Prompt:** {s['prompt']}\n")
        out.append(f"- *base:* {s['base'][:width]}")
        for c in cards:
            out.append(f"- *{c['run_id']}:* {c['samples'][i]['adapter'][:width]}")
        out.append("")
    return "\n".join(out).replace("\r", " ")


def main(paths: list[str]) -> None:
    cards = load(paths)
    c = cards[0]
    print(f"{c['rows']} held-out rows, {c['prompts']} prompts of {c['data_source']}; answers: seed "
          f"{c['settings']['seed']}, temperature {c['settings']['temperature']}, top-p {c['settings']['top_p']}, "
          f"up to {c['settings']['max_new_tokens']} new tokens.\n")
    if judge_caption(c):
        print(f"{judge_caption(c)} (first run's judge; each run's own accuracy is in the last row).\n")
    print(table(cards))
    print()
    print(samples(cards))


if __name__ == "__main__":
    main(sys.argv[1:])
