"""The evaluation's rows, as a plain-text table or JSON objects."""

from __future__ import annotations

from dataclasses import dataclass, field

MIB = 1024 * 1024
BASELINES = ("popularity", "item kNN (cosine)")


@dataclass(frozen=True)
class Row:
    """One method's figures: metrics averaged over queries, costs averaged over folds."""

    method: str
    parameters: str
    figures: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        """The row for ``--json``."""
        return {
            "method": self.method,
            "parameters": self.parameters,
            **self.figures,
            **({"error": self.error} if self.error else {}),
        }


def _cell(row: Row, name: str) -> str:
    value = row.figures.get(name)
    if value is None:
        return "-"
    if name == "rules":
        return f"{value:,.0f}"
    if name == "mining_seconds":
        return f"{value:.2f}"
    if name == "peak_rss_bytes":
        return f"{value / MIB:,.0f}"
    if name == "fired":
        return f"{value:.0%}" if row.method not in BASELINES else "-"
    return f"{value:.3f}"


def render_table(rows: list[Row], k: int, queries: int, folds: int) -> str:
    """A Markdown table of every row, then each rule row's ratios to the two baselines."""
    columns = [
        ("method", None),
        ("parameters", None),
        (f"HR@{k}", "hr"),
        (f"recall@{k}", "recall"),
        (f"NDCG@{k}", "ndcg"),
        ("R-prec", "r_precision"),
        ("rule fired", "fired"),
        ("rules", "rules"),
        ("mine s", "mining_seconds"),
        ("peak RSS MiB", "peak_rss_bytes"),
    ]
    lines = [
        f"{queries} test queries over {folds} folds; metrics are means over queries, rules and "
        "mining seconds means over folds, peak RSS the largest fold's.",
        "",
        "| " + " | ".join(title for title, _ in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for row in rows:
        cells = [row.method, row.parameters or "-"]
        if row.error:
            cells += [f"failed: {row.error}"] + [""] * (len(columns) - 3)
        else:
            cells += [_cell(row, name) for _, name in columns[2:] if name]
        lines.append("| " + " | ".join(cells) + " |")
    by_method = {row.method: row for row in rows if row.method in BASELINES}
    popularity, knn = by_method.get(BASELINES[0]), by_method.get(BASELINES[1])
    ratios = []
    for row in rows:
        if row.method in BASELINES or row.error or popularity is None or knn is None:
            continue
        parts = []
        for metric, title in (("hr", f"HR@{k}"), ("ndcg", f"NDCG@{k}")):
            mine, pop, cos = (row.figures[metric], popularity.figures[metric], knn.figures[metric])
            parts.append(
                f"{title} {mine / cos if cos else float('inf'):.2f}x kNN, "
                f"{mine / pop if pop else float('inf'):.2f}x popularity"
            )
        ratios.append(f"- {row.method} ({row.parameters}): " + "; ".join(parts))
    if ratios:
        lines += ["", "Ratios to the baselines of this run:", *ratios]
    return "\n".join(lines)
