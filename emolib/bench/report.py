"""``emolib bench``'s report: the markdown (BENCHMARKS.md) written from the figures ``emolib.bench.run`` measures.

``markdown(results)`` turns the results dict of ``bench.run_bench`` into the report: the fast path,
live latency and where the time goes, accuracy on the test split, face preparation, frozen-feature
extraction, peak memory, the targets (``TARGETS``) and what bounds the latency.
"""
from __future__ import annotations

from pathlib import Path

from ..fast.probes import real_speech_names

TARGETS = {"p50_seconds": 0.25, "speedup": 3.0, "prob_diff": 0.02, "uar_points": 1.0, "face_clips_per_second": 20.0, "rss_gb": 1.5,
           "all_int8_floor": 1.5}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _target(ok: bool) -> str:
    return "met" if ok else "**missed**"


def latency_lines(live: dict) -> list[str]:
    """The live-latency tables of ``latency.live_latency``'s figures: eager vs fast, their output difference, the parts."""
    return [
        "| path | p50 | p90 |", "|---|---|---|",
        f"| eager fp32 (`--no-fast`) | {_ms(live['eager']['p50'])} | {_ms(live['eager']['p90'])} |",
        f"| fast path (default) | {_ms(live['fast']['p50'])} | {_ms(live['fast']['p90'])} |",
        f"| **ratio eager / fast (p50)** | **{live['speedup_p50']:.2f}x** | |", "",
        f"Largest difference of the fused probabilities, fast vs eager: **{live['max_prob_diff']:.4f}** "
        f"(same top emotion in every run: {'yes' if live['same_label'] else 'no'}). The heads are random-init, so also the "
        f"embeddings: minimum cosine similarity fast vs eager, voice {live['voice_min_cosine']:.5f}, face {live['face_min_cosine']:.5f}.", "",
        "Where the time goes (p50 of each part, measured separately in the same loop):", "",
        "| part | p50 | p90 |", "|---|---|---|",
    ] + [f"| {name} | {_ms(value['p50'])} | {_ms(value['p90'])} |" for name, value in live["parts"].items()]


def build_lines(builds: dict) -> list[str]:
    """The fast files' build records (``run.fast_build_records``): size, build time, the check against eager, used or not, and
    the precision of each layer group."""
    lines = [f"Fast files built once per checkpoint (check = fast vs eager on probe inputs at build time: synthetic speech and "
             f"{len(real_speech_names())} real RAVDESS recordings, drawn faces; a file that fails it is not used, the next "
             "variant is tried):", "",
             "| file | size | build time | min cosine | max prob. diff | passed, used | layer groups |", "|---|---|---|---|---|---|---|"]
    for name, record in builds.items():
        check = record["check"] or {}
        layers = "; ".join(f"{group}: {kind}" for group, kind in (record.get("layers") or {}).items()) or "not recorded"
        lines.append(f"| {name} | {record['file_mb']} MB | {record['build_seconds']} s | {check.get('min_cosine', float('nan')):.5f} | "
                     f"{check.get('max_prob_diff', float('nan')):.4f} | {'yes' if record.get('ok') else 'no'} | {layers} |")
    return lines


def markdown(results: dict) -> str:
    """The BENCHMARKS.md text for ``results`` (as ``run_bench`` collects them): tables, targets and what bounds the latency."""
    live, env = results["live"], results["machine"]
    lines = [
        "# Benchmarks: fast CPU inference path", "",
        "Measured by `emolib bench` in one run on one machine; variants interleaved run by run.", "",
        f"Command: `{results['command']}`", "",
        f"Machine: {env['cpu']}, {env['logical_cpus']} logical CPUs ({env['physical_cores']} physical cores used by ONNX Runtime), "
        f"{env['flags']}; Python {env['python']}, torch {env['torch']} ({env['torch_threads']} threads), onnxruntime {env['onnxruntime']}. "
        f"Load average before/after: {results['load_before']} / {results['load_after']} (the machine is shared: absolute times are noisy, "
        f"ratios measured in the same run are the figures to compare).", "",
        "## The fast path", "",
        "Default for `emolib predict`, `live`, `timeline` and `Predictor.from_dir` (the demo notebook); `--no-fast` / `fast=False` "
        "is eager PyTorch fp32. Details and reasons in `emolib/fast/export.py`.", "",
        "- voice: ONNX Runtime; the 72 transformer linear layers int8 (dynamic activations; weights rounded by GPTQ on the probes, "
        "`emolib/fast/gptq.py`), the feature projection fp32; residual add + LayerNorm left unfused (ONNX Runtime's fused kernel is "
        "3x slower here); the conv "
        "feature encoder and the positional conv in bf16 (PyTorch oneDNN, `emolib/fast/frontend.py`; the conv encoder's bf16 weights rounded by GPTQ too, its last three layers fp32) on CPUs with native bf16 (AMX or AVX512-BF16; variant "
        "`int8-bf16`), else fp32 in ONNX Runtime (`int8`); static int8 there broke accuracy on real speech (see the last sections); "
        "exported for the fixed 4 s window.",
        "- face: ResNet in ONNX Runtime, static int8 (QDQ, per-channel 7-bit weights, calibrated on drawn faces).",
        "- small (`tiny`) encoders: ONNX Runtime fp32 (int8 gains nothing there and changed their outputs more).",
        "- built once per checkpoint (~75 s for the full-size pair, most of it GPTQ), checked against eager fp32, cached as "
        "`<checkpoint>/fast/<kind>-<variant>-<weights hash>.onnx` (+ `.json` build record; an int8-bf16 voice file + its front "
        "end's `.frontend.safetensors`), never unpickled; "
        "later loads skip reading the fp32 encoder weights.",
        "- ONNX Runtime threads = physical cores, no spin-waiting (robust on a shared machine).", "",
        "## Live prediction latency (full-size, random-init)", "",
        "`Predictor.predict(audio, 16000, frame)` for wav2vec2-base (built from `Wav2Vec2Config()` defaults) + ResNet-50 "
        f"(`weights=None`) + fusion MLP; {live['inputs']}; {live['eager']['n']} runs each after {live['warmup']} warm-up runs.", "",
    ]
    lines += latency_lines(live)
    for kind, ranked in results.get("profiles", {}).items():
        lines += ["", f"ONNX Runtime operator profile of the fast {kind} model (ms per run, 3 runs):", "",
                  "| operator | ms |", "|---|---|"] + [f"| {name} | {value:.1f} |" for name, value in ranked]
    if results.get("builds"):
        lines += [""] + build_lines(results["builds"])
    if results.get("uar"):
        uar = results["uar"]
        lines += ["", f"## Accuracy on the synthetic test split (trained checkpoints from `{results['models_dir']}`)", "",
                  f"{uar['clips']} test clips through `Predictor.predict_files` (as `emolib predict` does). Variants used: "
                  + "; ".join(f"{name}: voice {value['voice']}, face {value['face']}" for name, value in uar["variants"].items()) + ".", "",
                  "| model | path | UAR | accuracy | Δ UAR vs eager (points) | max prob. diff vs eager | top emotion changed |",
                  "|---|---|---|---|---|---|---|"]
        for kind, entry in uar["models"].items():
            base = entry["eager"]["uar"]
            for name, value in entry.items():
                lines.append(f"| {kind} | {name} | {value['uar']:.3f} | {value['accuracy']:.3f} | {(value['uar'] - base) * 100:+.1f} | "
                             f"{value['max_prob_diff']:.4f} | {value['label_changes']}/{value['n']} |")
    faces = results["faces"]
    lines += ["", f"## Face preparation (`prepare_faces`, {faces['clips']} synthetic CREMA-D clips, 3 frames each; best of 2 alternated runs)", "",
              "| run | workers | time | clips/s |", "|---|---|---|---|",
              f"| serial | 0 | {faces['serial']['seconds']:.1f} s | {faces['serial']['clips_per_second']:.1f} |",
              f"| parallel | {faces['parallel']['workers']} | {faces['parallel']['seconds']:.1f} s | {faces['parallel']['clips_per_second']:.1f} |",
              f"| cached re-run | {faces['parallel']['workers']} | {faces['cached']['seconds']:.2f} s | {faces['cached']['clips_per_second']:.0f} |", "",
              f"Frames with a detected face: {faces['parallel']['frames_with_face']}/{faces['parallel']['frames']}.", ""]
    features = results["features"]
    lines += [f"## Frozen-feature extraction (full-size encoders, {features['clips']} clips; best of 2 alternated runs)", "",
              "`features.extract_features` (what training on frozen encoders uses) vs the fast path clip by clip.", "",
              "| encoder | clips/s |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in features.items() if name != "clips"]
    rss = results["rss"]
    lines += ["", "## Peak memory of live prediction", "",
              "Peak RSS of a fresh process that loads the full-size predictor (fast files already built) and makes 3 live predictions:", "",
              "| path | peak RSS |", "|---|---|", f"| eager fp32 | {rss['eager']:.2f} GB |", f"| fast path | {rss['fast']:.2f} GB |", ""]
    best_faces = max(faces["serial"]["clips_per_second"], faces["parallel"]["clips_per_second"])
    uar_points = max((abs(value["uar"] - entry["eager"]["uar"]) * 100 for entry in results.get("uar", {}).get("models", {}).values()
                      for name, value in entry.items() if name == "fast"), default=None)
    lines += ["## Targets", "", "| target | measured | |", "|---|---|---|",
              f"| fast p50 ≤ {_ms(TARGETS['p50_seconds'])} | {_ms(live['fast']['p50'])} | {_target(live['fast']['p50'] <= TARGETS['p50_seconds'])} |",
              f"| ≥ {TARGETS['speedup']:.0f}x faster than eager fp32 | {live['speedup_p50']:.2f}x | {_target(live['speedup_p50'] >= TARGETS['speedup'])} |",
              f"| fused probabilities within {TARGETS['prob_diff']} | {live['max_prob_diff']:.4f} | {_target(live['max_prob_diff'] <= TARGETS['prob_diff'])} |"]
    if uar_points is not None:
        lines.append(f"| UAR within {TARGETS['uar_points']:.0f} point (fast vs eager) | {uar_points:.1f} points | {_target(uar_points <= TARGETS['uar_points'])} |")
    lines += [f"| face preparation ≥ {TARGETS['face_clips_per_second']:.0f} clips/s | {best_faces:.1f} clips/s | {_target(best_faces >= TARGETS['face_clips_per_second'])} |",
              f"| live peak RSS ≤ {TARGETS['rss_gb']} GB | {rss['fast']:.2f} GB | {_target(rss['fast'] <= TARGETS['rss_gb'])} |", ""]
    if results.get("roof") and results.get("flops"):
        lines += bounds(results)
    if results.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in results["notes"]] + [""]
    return "\n".join(lines)


def bounds(results: dict) -> list[str]:
    """The 'what bounds the latency' section, from this run's FLOP budget, GEMM roofs and latencies."""
    flops, roof, live = results["flops"], results["roof"], results["live"]
    vnni = "with VNNI" if "vnni" in results["machine"]["flags"] else "without VNNI"  # from this machine's /proc/cpuinfo flags
    total = sum(flops.values())
    eager_rate = total / live["eager"]["p50"]
    front = flops.get("voice front end", 0.0)
    bf16 = "bf16" in roof and any(record.get("variant") == "int8-bf16" and record.get("ok") for record in results.get("builds", {}).values())
    front_ms = front / (roof["bf16"] if bf16 else roof["fp32"]) * 1000
    fp32_ms = flops["voice fp32"] / roof["fp32"] * 1000
    int8_ms = (flops["voice int8"] + flops["face"]) / roof["int8"] * 1000
    floor_ms = front_ms + fp32_ms + int8_ms
    all_int8_ms = total / roof["int8"] * 1000
    fast_ms = live["fast"]["p50"] * 1000
    detection = live["parts"]["face detection + crop"]["p50"] * 1000
    bf16_roof = f", bf16 (PyTorch oneDNN) {roof['bf16']:.0f} GFLOP/s" if "bf16" in roof else " (no native bf16 on this CPU)"
    return [
        "## What bounds the latency", "",
        f"Work per live prediction: {total:.1f} GFLOPs (2 x multiply-adds): voice {front + flops['voice fp32'] + flops['voice int8']:.1f} "
        f"(conv feature encoder and positional conv {front:.1f}, {'bf16' if bf16 else 'fp32'} in the fast path; {flops['voice fp32']:.1f} "
        f"more stay fp32: feature projection, attention products; {flops['voice int8']:.1f} are the int8 transformer linears), "
        f"face {flops['face']:.1f} (int8).", "",
        f"GEMM roofs measured in this run (2048x2048x2048, same threads): ONNX Runtime fp32 {roof['fp32']:.0f} GFLOP/s, "
        f"int8 (u8s8, CPU {vnni}) {roof['int8']:.0f} GOP/s{bf16_roof}.", "",
        f"- Eager fp32 runs at {eager_rate:.0f} GFLOP/s, {eager_rate / roof['fp32']:.0%} of the fp32 roof.",
        f"- The fast path's compute floor at these roofs: bf16 front end {front_ms:.0f} ms + fp32 part {fp32_ms:.0f} ms + int8 part "
        f"{int8_ms:.0f} ms = {floor_ms:.0f} ms; measured p50 {fast_ms:.0f} ms, the rest being element-wise operators (GELU, norms, "
        f"dynamic quantization; see the profile) and {detection:.0f} ms of face detection and cropping.",
        f"- All-int8 floor (all {total:.0f} GFLOPs at the int8 roof): {all_int8_ms:.0f} ms; the fast path measures "
        f"{fast_ms / all_int8_ms:.2f}x that (goal ≤ {TARGETS['all_int8_floor']}x), {live['eager']['p50'] * 1000 / fast_ms:.2f}x faster than eager "
        f"(goal ≥ {TARGETS['speedup']:.0f}x).",
    ] + ([
        f"- That floor is no target on this CPU: its int8 roof is {roof['int8'] / roof['fp32']:.0f}x its fp32 one, a rate only large "
        "products reach (a live window gives the transformer's products a few hundred rows), and face detection and cropping alone "
        f"take {detection / all_int8_ms:.0%} of it."
        + (" The all-int8 voice file, static int8 conv front end included, measured slower than the int8-bf16 one, not faster "
           "(the p50 column of 'The fast voice files on real speech', `emolib bench --fast-real`)." if bf16 else ""),
    ] if fast_ms > TARGETS["all_int8_floor"] * all_int8_ms else []) + [
        "- Static int8 of the conv feature encoder was tried again, calibrated on real speech (see 'The fast voice files on real "
        "speech'): real recordings' silences give conv features far below one per-tensor int8 step, and the feature projection's "
        "LayerNorm scales each frame back to unit size, so their rounding error becomes full-size. bf16 keeps ~3 significant "
        "digits of every value, loud or quiet, and runs the front end's products on AMX / AVX512-BF16 where the CPU has them.",
        "",
    ]


def replace_section(path, section: str, start: str, end: str) -> str:
    """``path``'s text with the part between the ``start`` and ``end`` markers replaced by ``section`` (appended when absent)."""
    text = Path(path).read_text() if Path(path).is_file() else ""
    if start in text and end in text:
        return text[: text.index(start)] + section + text[text.index(end) + len(end):]
    return text.rstrip() + "\n\n" + section + "\n"
