"""Evaluation reports: report.json (everything), report.html (self-contained) and report.md.

report.json is the machine-readable record a later ``vla-sim eval --reference`` reads back: the
policy spec, the env config, every seed, every episode, the fingerprint. Only its ``timing``
part changes between two runs of the same evaluation. With ``--probe swap`` the tables add the
"obeyed" rate (the swapped instruction completed) and the original-task rate under the swap, each
with its 95% Wilson interval, beside the success rate. When the evaluated checkpoint's run folder
(the checkpoint folder or its parent, e.g. ``runs/ppo`` for ``runs/ppo/best``) holds the
trainer's ``curves.png`` (success vs env steps and wall-clock), report.html embeds it and
report.md links it.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any, Optional

from vla_sim.evaluation.evaluator import EvalResult
from vla_sim.utils.io import atomic_write_json, atomic_write_text
from vla_sim.utils.plots import CURVES_PNG

CELL_COLUMNS = [  # (header, key in the cell dict, format)
    ("env", "env_id", "{}"), ("task", "task", "{}"), ("split", "split", "{}"),
    ("randomization", "level", "{}"), ("successes", None, None), ("success rate", "success_rate", "{:.1%}"),
    ("95% CI", None, None), ("mean length", "mean_length", "{:.1f}"),
    ("mean return", "mean_return", "{:.3f}"), ("mean steps to success", "mean_time_to_success", "{:.1f}"),
    ("expert cos", "alignment_cos", "{:.3f}"), ("expert sign agree", "alignment_sign", "{:.1%}"),
]
# With a probe, after "95% CI": (header, rate key, CI key prefix)
PROBE_COLUMNS = [("obeyed under swap (95% CI)", "obeyed"),
                 ("original task under swap (95% CI)", "did_original")]
EPISODE_COLUMNS = ["env_id", "split", "level", "index", "seed", "success", "length", "return",
                   "time_to_success", "first_frame_hash", "randomization_hash", "instruction",
                   "video"]
PROBE_EPISODE_COLUMNS = ["probe_instruction", "probe_obeyed", "probe_did_original"]
PROBE_NOTE = ("Swap probe: each episode re-run from the same scene with the instruction naming "
              "another object of the scene. \"Obeyed\": the swapped instruction was completed; "
              "\"original task under swap\": the original instruction's task was done anyway "
              "(its success predicate held at the episode's end). A policy that follows language "
              "obeys about as often as it succeeds and rarely does the original task; one that "
              "ignores language, or binds the wrong object, does the reverse.")


def _fmt(fmt: str, value: Any) -> str:
    return "-" if value is None else fmt.format(value)


def has_probe(cells: list[dict[str, Any]]) -> bool:
    return any(c.get("probe_episodes") is not None for c in cells)


def cell_headers(cells: list[dict[str, Any]]) -> list[str]:
    """Column headers of :func:`cell_rows` for these cells (probe columns when probed)."""
    headers = [h for h, _, _ in CELL_COLUMNS]
    if has_probe(cells):
        at = headers.index("95% CI") + 1
        headers[at:at] = [h for h, _ in PROBE_COLUMNS]
    return headers


def _rate_ci(c: dict[str, Any], name: str) -> str:
    if c.get(f"{name}_rate") is None:
        return "-"
    return (f"{c[name]}/{c['probe_episodes']} = {c[f'{name}_rate']:.1%} "
            f"[{c[f'{name}_ci_low']:.1%}, {c[f'{name}_ci_high']:.1%}]")


def cell_rows(cells: list[dict[str, Any]]) -> list[list[str]]:
    probe = has_probe(cells)
    rows = []
    for c in cells:
        row = []
        for header, key, fmt in CELL_COLUMNS:
            if header == "successes":
                row.append(f"{c['successes']}/{c['episodes']}")
            elif header == "95% CI":
                row.append(f"[{c['ci_low']:.1%}, {c['ci_high']:.1%}]")
                if probe:
                    row += [_rate_ci(c, name) for _, name in PROBE_COLUMNS]
            else:
                row.append(_fmt(fmt, c[key]))
        rows.append(row)
    return rows


def episode_columns(report: dict[str, Any]) -> list[str]:
    """EPISODE_COLUMNS, with the probe's before ``video`` when the report has a probe."""
    if not has_probe(report["cells"]):
        return list(EPISODE_COLUMNS)
    return EPISODE_COLUMNS[:-1] + PROBE_EPISODE_COLUMNS + EPISODE_COLUMNS[-1:]


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{v}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fingerprint_rows(fp: dict[str, Any]) -> list[list[str]]:
    rows = [[f"version: {k}", str(v)] for k, v in (fp.get("versions") or {}).items()]
    rows += [[k, str(v)] for k, v in fp.items() if k != "versions"]
    return rows


def success_chart_svg(cells: list[dict[str, Any]], width: int = 640) -> str:
    """Inline SVG bar chart: one bar per cell (success rate) with its 95% Wilson interval, and
    with a probe a second, orange bar beside it (obeyed rate under the swap) with its own."""
    n = max(1, len(cells))
    probe = has_probe(cells)
    bar_w = max(12, min(60, (width - 60) // n - 8))
    height, top, bottom, left = 240, 10, 90, 40
    plot_h = height - top - bottom
    width = max(width, left + n * (bar_w + 8) + 10)
    y = lambda v: top + plot_h * (1 - v)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="10">']
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{left}" x2="{width - 5}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
                     f'stroke="#ddd"/><text x="{left - 4}" y="{y(tick) + 3:.1f}" '
                     f'text-anchor="end">{tick:.0%}</text>')
    for i, c in enumerate(cells):
        x = left + 6 + i * (bar_w + 8)
        rate = c["success_rate"]
        colour = "#4c9a2a" if c["split"] == "train" else "#2a6f9a"
        parts.append(f'<rect x="{x}" y="{y(rate):.1f}" width="{bar_w}" '
                     f'height="{plot_h * rate:.1f}" fill="{colour}"><title>'
                     f'{html.escape(c["env_id"])} {c["split"]} {c["level"]}: {rate:.1%}</title></rect>')
        cx = x + bar_w / 2
        parts.append(f'<line x1="{cx}" x2="{cx}" y1="{y(c["ci_low"]):.1f}" '
                     f'y2="{y(c["ci_high"]):.1f}" stroke="black"/>')
        if probe and c.get("obeyed_rate") is not None:
            ob, ox, ow = c["obeyed_rate"], x + bar_w // 2, bar_w - bar_w // 2
            parts.append(f'<rect x="{ox}" y="{y(ob):.1f}" width="{ow}" height="{plot_h * ob:.1f}" '
                         f'fill="#e08a1e"><title>obeyed under swap: {ob:.1%}</title></rect>')
            ocx = ox + ow / 2
            parts.append(f'<line x1="{ocx}" x2="{ocx}" y1="{y(c["obeyed_ci_low"]):.1f}" '
                         f'y2="{y(c["obeyed_ci_high"]):.1f}" stroke="#6b3d00"/>')
        label = html.escape(f'{c["env_id"].split("/")[-1]} {c["split"]} {c["level"]}')
        parts.append(f'<text transform="translate({cx},{top + plot_h + 6}) rotate(60)">'
                     f'{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _rel(video_dir: Optional[str], name: Optional[str], out_dir: Path) -> Optional[str]:
    if not video_dir or not name:
        return None
    return os.path.relpath(Path(video_dir) / name, out_dir)


def training_curves(report: dict[str, Any]) -> Path | None:
    """The evaluated checkpoint's training curves (``curves.png`` in the checkpoint folder or
    in the run folder above it), or None (another policy kind, or no curves there)."""
    policy = report.get("policy") or {}
    if policy.get("kind") != "checkpoint" or not policy.get("target"):
        return None
    folder = Path(policy["target"])
    for candidate in (folder / CURVES_PNG, folder.parent / CURVES_PNG):
        if candidate.is_file():
            return candidate
    return None


def actions_note(report: dict[str, Any]) -> str:
    """How the policy chose its actions in ``report`` (older reports: the mode)."""
    if (report.get("config") or {}).get("sample_actions"):
        return "sampled from the policy's distribution (seeded per episode)"
    return "the policy's mode (deterministic)"


def render_markdown(report: dict[str, Any], out_dir: Path | None = None) -> str:
    headers = cell_headers(report["cells"])
    ep_cols = episode_columns(report)
    parts = [f"# Evaluation report: {report['policy'].get('kind')} "
             f"{report['policy'].get('target') or ''}".rstrip(), "",
             f"Base seed {report['env_config']['base_seed']}, "
             f"{report['env_config']['episodes']} episodes per cell, robot "
             f"{report['env_config']['robot']}, image {report['env_config']['image_size']} px, "
             f"actions: {actions_note(report)}.", "",
             "## Success rates", "", md_table(headers, cell_rows(report["cells"])), ""]
    if has_probe(report["cells"]):
        parts += [PROBE_NOTE, ""]
    if report.get("reference"):
        parts += ["## Against the reference", "", md_table(*_reference_table(report["reference"])),
                  ""]
    curves = training_curves(report)
    if curves is not None:
        link = os.path.relpath(curves.resolve(), Path(out_dir).resolve()) if out_dir else curves
        parts += ["## Training curves", "",
                  f"![success vs env steps and wall-clock]({Path(link).as_posix()})", ""]
    parts += ["## Fingerprint", "", md_table(["field", "value"], _fingerprint_rows(report["fingerprint"])),
              "", "## Episodes", "",
              md_table(ep_cols, [[str(e.get(k)) for k in ep_cols] for e in report["episodes"]]),
              ""]
    return "\n".join(parts)


def _reference_table(ref: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["env", "split", "randomization", "before", "before 95% CI", "now", "now 95% CI",
               "difference", "intervals overlap"]
    rows = []
    for d in ref.get("cells", []):
        rows.append([d["env_id"], d["split"], d["level"], f"{d['old_rate']:.1%}",
                     f"[{d['old_ci'][0]:.1%}, {d['old_ci'][1]:.1%}]", f"{d['new_rate']:.1%}",
                     f"[{d['new_ci'][0]:.1%}, {d['new_ci'][1]:.1%}]", f"{d['difference']:+.1%}",
                     "yes" if d["overlap"] else "no"])
    return headers, rows


def render_html(report: dict[str, Any], out_dir: Path, preview_png: Optional[bytes]) -> str:
    video_dir = report["config"].get("video_dir")
    headers = cell_headers(report["cells"]) + ["grid video"]
    ep_cols = episode_columns(report)
    rows = []
    for c, row in zip(report["cells"], cell_rows(report["cells"])):
        row = [html.escape(v) for v in row]
        rel = _rel(video_dir, c.get("grid_video"), out_dir)
        row.append(f'<a href="{html.escape(rel)}">grid</a>' if rel else "-")
        rows.append(row)
    ep_rows = []
    for e in report["episodes"]:
        row = [html.escape(str(e.get(k))) for k in ep_cols[:-1]]
        rel = _rel(video_dir, e.get("video"), out_dir)
        row.append(f'<a href="{html.escape(rel)}">mp4</a>' if rel else "-")
        ep_rows.append(row)
    title = html.escape(f"{report['policy'].get('kind')} {report['policy'].get('target') or ''}")
    curves = ""
    curves_path = training_curves(report)
    if curves_path is not None:
        b64 = base64.b64encode(curves_path.read_bytes()).decode()
        curves = (f'<h2>Training curves</h2><p>{html.escape(str(curves_path))}: in-training '
                  'success (bands: 95% Wilson interval)</p><img alt="training curves: success '
                  f'vs env steps and wall-clock" src="data:image/png;base64,{b64}">')
    frame = ""
    if preview_png:
        b64 = base64.b64encode(preview_png).decode()
        frame = f'<h2>A frame</h2><img alt="rollout frame" src="data:image/png;base64,{b64}">'
    ref = ""
    if report.get("reference"):
        r = report["reference"]
        ref = (f"<h2>Against the reference</h2><p>{html.escape(r.get('summary', ''))}</p>"
               + _html_table(*_reference_table(r)))
    env_json = html.escape(json.dumps(report["env_config"], indent=1))
    probe_note = (f"<p>{html.escape(PROBE_NOTE)} Orange bars: the obeyed rate.</p>"
                  if has_probe(report["cells"]) else "")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>vla-sim evaluation: {title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}th{{background:#f3f3f3}}</style></head><body>
<h1>Evaluation: {title}</h1>
<h2>Success rate per cell (bars: 95% Wilson interval)</h2>
{success_chart_svg(report["cells"])}
{_html_table(headers, rows)}
{probe_note}
{ref}
{curves}
{frame}
<h2>Env config</h2><pre>{env_json}</pre>
<h2>Fingerprint</h2>{_html_table(["field", "value"], [[html.escape(a), html.escape(b)] for a, b in _fingerprint_rows(report["fingerprint"])])}
<details><summary>Episodes ({len(ep_rows)})</summary>{_html_table(ep_cols, ep_rows)}</details>
</body></html>
"""


def write_report(result: EvalResult, out_dir: Path, reference: Optional[dict[str, Any]] = None
                 ) -> dict[str, Path]:
    """Write report.json, report.html and report.md into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    report = result.to_dict()
    if reference is not None:
        report["reference"] = reference
    paths = {"json": out_dir / "report.json", "html": out_dir / "report.html",
             "md": out_dir / "report.md"}
    atomic_write_json(paths["json"], report)
    atomic_write_text(paths["html"], render_html(report, out_dir, result.preview_png))
    atomic_write_text(paths["md"], render_markdown(report, out_dir))
    return paths


def load_report(path: Path) -> dict[str, Any]:
    """Read a report.json (or the report.json inside a directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise FileNotFoundError(f"no report at {path}")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    missing = [k for k in ("config", "episodes", "cells", "fingerprint") if k not in report]
    if missing:
        raise ValueError(f"{path} is not a vla-sim eval report (missing {missing})")
    return report
