"""The voice conv front end in bf16 (emolib.fast.frontend) and the int8-bf16 fast voice file, checked on real speech.

Real speech: the RAVDESS recordings of the fixture (tests/data/real/ravdess, actors 1 and 20), which keep their silences;
the packaged probes the build check uses are other actors (3 and 4). Any CPU runs these tests: bf16 arithmetic is emulated
where the CPU has none (slower, same numbers); the runtime's choice of the file is made to believe in native bf16 here.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

from emolib.audio import load_audio
from emolib.fast import cache as fast_cache, frontend
from emolib.fast.voice_graph import voice_arrays
from emolib.fast.frontend import ConvFrontEnd, PositionalConv, VoiceFrontEnd, positional_supported, supported
from emolib.fast.session import CONV_FEATURES, POSITIONS
from emolib.models.nets import VoiceConfig, VoiceModel
from emolib.infer.predictor import Predictor
from emolib.models.backbones import TINY_VOICE_CONFIG
from emolib.transforms import AudioSettings

from test_predict import make_untrained_models

REAL = Path(__file__).parent / "data" / "real" / "ravdess"
FIXTURE_CLIPS = sorted(REAL.glob("Actor_*/*.flac"))


@pytest.fixture(autouse=True)
def private_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOLIB_CACHE", str(tmp_path / "user-cache"))


def real_windows(count: int | None = None) -> list[np.ndarray]:
    """4 s model windows (zero-padded: RAVDESS clips are 3-4 s, with silence before and after the sentence)."""
    settings = AudioSettings()
    return [voice_arrays(load_audio(path), settings)["input_values"] for path in FIXTURE_CLIPS[:count]]


def encoder(**changes) -> Wav2Vec2Model:
    torch.manual_seed(1)
    return Wav2Vec2Model(Wav2Vec2Config(**{**TINY_VOICE_CONFIG, **changes})).eval()


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("changes", [{}, {"feat_extract_norm": "layer", "conv_bias": True}], ids=["group norm", "layer norm + bias"])
def test_front_end_computes_the_feature_encoder_on_real_speech(changes):
    extractor = encoder(**changes).feature_extractor
    assert supported(extractor)
    windows = torch.from_numpy(np.concatenate(real_windows(6)))
    with torch.inference_mode():
        want = extractor(windows).transpose(1, 2)
        exact = ConvFrontEnd(extractor, torch.float32)(windows)
        fast = ConvFrontEnd(extractor)(windows)
    assert exact.shape == fast.shape == want.shape
    # float32: the GroupNorm folded into the first product is the same arithmetic, reordered
    assert relative_error(exact, want) < 1e-4
    # bf16 keeps ~3 significant digits of every value, loud or quiet: per clip, and on the quietest frames alone
    for index in range(len(windows)):
        assert relative_error(fast[index], want[index]) < 0.03
    energy = want.norm(dim=2)
    quiet = energy < energy.quantile(0.1)
    assert relative_error(fast[quiet], want[quiet]) < 0.05


def test_gptq_rounded_front_end_keeps_other_peoples_speech_closer_to_fp32():
    """A full-width wav2vec2 front end (random init): its bf16 weights rounded by GPTQ on ten of the packaged probe windows
    (RAVDESS actors 3 and 4), the first layer's on each input's own patches, against rounding every weight to its nearest
    bf16 value. Measured on the fixture's actors 1 and 20, as the error of each clip's mean conv features: a weight's
    rounding error is the same in every frame, so it is what the pooling keeps."""
    from types import SimpleNamespace

    from emolib.fast import gptq
    from emolib.fast.frontend import gptq_weights, rounded_layers
    from emolib.fast.probes import default_probes

    torch.manual_seed(2)
    extractor = Wav2Vec2Model(Wav2Vec2Config(num_hidden_layers=1)).feature_extractor.eval()
    assert rounded_layers(extractor) == [1, 2, 3]  # the GroupNorm'd first layer is rounded per input; 4-6 run fp32
    feeds = [voice_arrays(wave, AudioSettings()) for wave in default_probes().speech_windows()[::3]]
    calibrating = SimpleNamespace(features=lambda input_values, **_: extractor(input_values))
    moments = gptq.second_moments(calibrating, {index: extractor.conv_layers[index].conv for index in rounded_layers(extractor)}, feeds)
    windows = [torch.from_numpy(window) for window in real_windows()[::4]]

    def clip_means(front: ConvFrontEnd) -> torch.Tensor:
        with torch.inference_mode():
            return torch.stack([front(window)[0].mean(0) for window in windows])

    want = clip_means(ConvFrontEnd(extractor, torch.float32))

    def error(front: ConvFrontEnd) -> float:
        return float(((clip_means(front) - want).norm(dim=1) / want.norm(dim=1)).mean())

    nearest = ConvFrontEnd(extractor)
    nearest.fold_rounding = False  # the first layer's folded weights, too, rounded to the nearest bf16 value
    first_only, rounded = ConvFrontEnd(extractor), ConvFrontEnd(extractor, rounded=gptq_weights(extractor, moments))
    assert rounded.cast[1].dtype == torch.bfloat16 and not torch.equal(rounded.cast[1], nearest.cast[1])
    assert error(first_only) < 0.95 * error(nearest)  # measured: 0.00184 against 0.00208
    assert error(rounded) < 0.8 * error(nearest), (error(rounded), error(nearest))  # measured: 0.00141
    with pytest.raises(ValueError, match="do not fit"):  # weights for a layer that runs fp32, or of another shape
        ConvFrontEnd(extractor, rounded={4: rounded.cast[1]})


def test_front_end_reuses_its_buffers_and_never_returns_one():
    """The front end's intermediates live in buffers kept for the last input shape; what it returns is the caller's: a later
    call (same shape, or another batch size) leaves an earlier result as it was, and equal inputs give equal outputs."""
    extractor = encoder().feature_extractor
    front = ConvFrontEnd(extractor)
    windows = torch.from_numpy(np.concatenate(real_windows(3)))
    with torch.inference_mode():
        first = front(windows[:1])
        kept = first.clone()
        buffers = {key: buffer.data_ptr() for key, buffer in front._workspace.items()}
        second = front(windows[1:2])
        assert {key: buffer.data_ptr() for key, buffer in front._workspace.items()} == buffers  # reused, not made again
        assert torch.equal(first, kept) and not torch.equal(first, second)
        both = front(windows[:2])  # another shape: its own buffers; each item as computed alone
        assert torch.allclose(both[0], kept, atol=1e-6) and torch.allclose(both[1], second, atol=1e-6)
        assert torch.equal(front(windows[:1]), kept)
        assert torch.equal(first, kept)


def voice_model(backbone=None) -> VoiceModel:
    torch.manual_seed(2)
    model = VoiceModel(VoiceConfig(backbone="tiny", freeze="none", num_labels=6)).eval()
    if backbone is not None:
        model.encoder = backbone.eval()
    return model


@pytest.mark.parametrize("changes", [{}, {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True}],
                         ids=["group norm (no mask)", "stable layer norm (masked)"])
def test_voice_front_end_computes_the_positional_conv_on_real_speech(changes):
    """The positional convolution's output, as the encoder adds it to its frames: bf16 within 3 % of fp32 on real speech,
    including the frames next to the padding of a short clip (the encoder of a "layer" model zeroes padded frames first)."""
    model = voice_model(encoder(**changes))
    assert positional_supported(model.encoder)
    front = VoiceFrontEnd(model)
    assert front.outputs == (CONV_FEATURES, POSITIONS)
    arrays = voice_arrays(load_audio(FIXTURE_CLIPS[0])[:24000], AudioSettings())  # 1.5 s of speech in a 4 s window
    assert arrays["attention_mask"].min() == 0
    captured = {}
    positional = model.encoder.encoder.pos_conv_embed
    hook = positional.register_forward_hook(lambda module, inputs, output: captured.update(want=output))
    with torch.inference_mode():
        model.features(**{name: torch.from_numpy(value) for name, value in arrays.items()})
    hook.remove()
    want = captured["want"]
    got = torch.from_numpy(front(arrays["input_values"], arrays["attention_mask"])[POSITIONS])
    assert got.shape == want.shape
    assert relative_error(got, want) < 0.03
    exact = VoiceFrontEnd(model)
    exact.conv, exact.positional = ConvFrontEnd(model.encoder.feature_extractor, torch.float32), PositionalConv(positional, torch.float32)
    assert relative_error(torch.from_numpy(exact(arrays["input_values"], arrays["attention_mask"])[POSITIONS]), want) < 1e-4


def test_a_positional_conv_of_another_form_stays_in_the_graph(tmp_path, bf16_here):
    """HuBERT with a batch norm in its positional conv: the front end gives the conv features only, the graph keeps the
    positional conv (fp32), and the int8-bf16 file still reproduces eager."""
    from emolib.fast.runtime import FastPath

    hubert = HubertModel(HubertConfig(**TINY_VOICE_CONFIG, conv_pos_batch_norm=True))
    model = voice_model(hubert)
    model.checkpoint_dir = tmp_path
    assert supported(hubert.feature_extractor) and not positional_supported(hubert)
    assert VoiceFrontEnd(model).outputs == (CONV_FEATURES,)
    fast = FastPath(voice=model, audio_settings=AudioSettings()).voice
    assert fast.variant == "int8-bf16" and fast.record["ok"]
    assert fast.record["layers"]["positional convolution"] == "fp32"
    assert [node.name for node in fast.session.get_inputs()][:1] == [CONV_FEATURES]
    assert POSITIONS not in [node.name for node in fast.session.get_inputs()]


def test_front_ends_of_other_forms_are_left_to_onnx_runtime(tmp_path, monkeypatch):
    relu = encoder(feat_extract_activation="relu").feature_extractor
    assert not supported(relu)
    with pytest.raises(ValueError, match="front end"):
        ConvFrontEnd(relu)
    model = type("Voice", (), {"encoder": encoder(feat_extract_activation="relu")})()
    monkeypatch.setattr(frontend, "bf16_cpu", lambda: True)
    monkeypatch.setattr(fast_cache, "QUANTIZE_MIN_PARAMS", 0)
    assert fast_cache.attempts("voice", model, "auto") == ["int8", "fp32"]
    model.encoder = encoder()
    assert fast_cache.attempts("voice", model, "auto") == ["int8-bf16", "int8", "fp32"]
    assert fast_cache.attempts("voice", model, "int8") == ["int8", "fp32"]  # forcing int8 names the ONNX Runtime file
    assert fast_cache.attempts("face", model, "auto") == ["int8", "fp32"]
    monkeypatch.setattr(frontend, "bf16_cpu", lambda: False)
    assert fast_cache.attempts("voice", model, "auto") == ["int8", "fp32"]


@pytest.fixture
def bf16_here(monkeypatch):
    """This CPU counts as one with native bf16, and the tiny models as large enough for int8."""
    monkeypatch.setattr(frontend, "bf16_cpu", lambda: True)
    monkeypatch.setattr(fast_cache, "QUANTIZE_MIN_PARAMS", 0)


def voice_outputs(predictor: Predictor, windows) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, head probabilities) of each real clip through ``predictor``'s voice path."""
    features = np.concatenate([np.asarray(predictor.voice_features(wave)) for wave in windows])
    with torch.inference_mode():
        probabilities = torch.softmax(predictor.voice.classify(torch.from_numpy(features)), dim=1).numpy()
    return features, probabilities


@pytest.mark.parametrize("variant", ["int8-bf16", "int8"])
def test_fast_voice_files_agree_with_eager_on_real_speech(tmp_path, bf16_here, variant):
    """The fast voice files (bf16 conv front end + int8 transformer; all-ONNX int8) against eager fp32 on the 50 real
    recordings of the fixture: embeddings, and the probabilities of a head trained on real labels."""
    models = make_untrained_models(tmp_path / "models")
    eager = Predictor.from_dir(models, fast=False)
    waves = [load_audio(path) for path in FIXTURE_CLIPS]
    eager_features, _ = voice_outputs(eager, waves)
    # a head with real labels: logistic regression on the eager features of actor 1, emotion from the file name
    from sklearn.linear_model import LogisticRegression

    labels = np.array([int(path.name.split("-")[2]) for path in FIXTURE_CLIPS])
    train = np.array(["Actor_01" in str(path) for path in FIXTURE_CLIPS])
    scaled = (eager_features - eager_features.mean(0)) / eager_features.std(0)
    head = LogisticRegression(max_iter=2000).fit(scaled[train], labels[train])

    fast = Predictor.from_dir(models, quantize="auto" if variant == "int8-bf16" else "int8")
    assert fast.fast.voice.variant == variant
    record = fast.fast.voice.record
    assert record["ok"] and record["layers"]["conv feature encoder"].startswith("bf16" if variant == "int8-bf16" else "fp32")
    assert record["layers"]["transformer linear layers"].startswith("int8")
    fast_features, _ = voice_outputs(fast, waves)
    cosines = (fast_features * eager_features).sum(1) / np.linalg.norm(fast_features, axis=1) / np.linalg.norm(eager_features, axis=1)
    assert cosines.min() > 0.99, cosines.min()
    rescale = lambda features: (features - eager_features.mean(0)) / eager_features.std(0)  # noqa: E731
    p_eager, p_fast = head.predict_proba(rescale(eager_features)), head.predict_proba(rescale(fast_features))
    assert np.abs(p_eager - p_fast).max() < 0.02
    assert (p_eager.argmax(1) == p_fast.argmax(1)).mean() >= 0.96


def test_int8_bf16_file_is_reloaded_lean_and_left_where_bf16_is_missing(tmp_path, bf16_here, monkeypatch):
    models = make_untrained_models(tmp_path / "models")
    built = Predictor.from_dir(models)
    assert built.fast.voice.variant == "int8-bf16"
    files = sorted(path.name for path in (models / "voice" / "fast").glob("*.onnx"))
    assert len(files) == 1 and files[0].startswith("voice-int8-bf16-")
    wave = load_audio(FIXTURE_CLIPS[0])
    first = built.voice_features(wave)

    fast_dir = models / "voice" / "fast"
    record = json.loads(next(fast_dir.glob("voice-int8-bf16-*.json")).read_text())
    weights_file = fast_dir / files[0].replace(".onnx", ".frontend.safetensors")
    assert weights_file.is_file() and len(record["front_end_sha256"]) == 64  # the front end's GPTQ-rounded bf16 weights
    assert "rounded by GPTQ" in record["layers"]["conv feature encoder"]

    again = Predictor.from_dir(models)  # from the cache: the encoder is not read, but for its conv front end
    assert again.fast.voice.variant == "int8-bf16" and again.voice.lean
    stored = again.voice.encoder.feature_extractor.conv_layers[1].conv.weight
    assert stored.stride() != (0, 0, 0) and float(stored.detach().abs().sum()) > 0
    assert np.abs(again.voice_features(wave) - first).max() < 1e-5
    positional = again.voice.encoder.encoder.pos_conv_embed.conv.weight  # (weight-normed: computed from the stored pair)
    assert float(positional.detach().abs().sum()) > 0  # the positional conv runs before the graph too
    query = dict(again.voice.encoder.named_parameters())["encoder.layers.0.attention.q_proj.weight"]
    assert query.stride() == (0, 0)  # the rest of the encoder lives in the ONNX file
    assert again.fast.voice.record["layers"]["positional convolution"].startswith("bf16")

    from emolib.errors import ModelError
    from emolib.fast.session import FastModel

    fast = again.fast.voice
    conv_only = VoiceFrontEnd(again.voice)
    conv_only.positional, conv_only.outputs = None, (CONV_FEATURES,)
    for front in (None, conv_only):  # a graph is never fed by a front end that does not make what it takes
        with pytest.raises(ModelError, match="do not match"):
            FastModel("voice", fast.path, fast.record, front=front)

    monkeypatch.setattr(frontend, "bf16_cpu", lambda: False)
    elsewhere = Predictor.from_dir(models)  # the same folder on a CPU without bf16: the ONNX Runtime file
    assert elsewhere.fast.voice.variant == "int8"
    record = json.loads(next((models / "voice" / "fast").glob("voice-int8-bf16-*.json")).read_text())
    assert record["layers"]["conv feature encoder"].startswith("bf16") and record["recipe"] == fast_cache.RECIPE_VERSION


def test_front_end_weights_that_are_not_the_checked_ones_are_rebuilt(tmp_path, bf16_here, capsys):
    """The front end's rounded weights belong to the file they were checked with: replaced or missing, the file is rebuilt."""
    from safetensors.torch import load_file, save_file

    models = make_untrained_models(tmp_path / "models")
    wave = load_audio(FIXTURE_CLIPS[0])
    first = Predictor.from_dir(models).voice_features(wave)
    weights_file = next((models / "voice" / "fast").glob("voice-int8-bf16-*.frontend.safetensors"))
    save_file({name: torch.zeros_like(tensor) for name, tensor in load_file(str(weights_file)).items()}, str(weights_file))
    capsys.readouterr()
    again = Predictor.from_dir(models)
    assert "is not the one its build record checked; rebuilding it" in capsys.readouterr().err
    assert again.fast.voice.variant == "int8-bf16" and np.abs(again.voice_features(wave) - first).max() < 1e-5
    weights_file.unlink()
    assert Predictor.from_dir(models).fast.voice.variant == "int8-bf16"
    assert "rebuilding it" in capsys.readouterr().err and weights_file.is_file()


def test_front_end_that_breaks_the_check_falls_back(tmp_path, bf16_here, monkeypatch, capsys):
    """A bf16 front end that does not reproduce eager (here: per-tensor rounding to 16 levels, what broke int8 front ends on
    quiet frames) fails the build check, says so, and the all-ONNX int8 file is used."""
    original = ConvFrontEnd.forward

    def off(self, waves):
        out = original(self, waves)
        step = float(out.abs().max()) / 8
        return torch.round(out / step) * step

    monkeypatch.setattr(ConvFrontEnd, "forward", off)
    models = make_untrained_models(tmp_path / "models")
    predictor = Predictor.from_dir(models)
    assert predictor.fast.voice.variant == "int8"
    assert "int8-bf16 export differs from eager fp32" in capsys.readouterr().err
    records = [json.loads(path.read_text()) for path in (models / "voice" / "fast").glob("voice-*.json")]
    assert {record["variant"]: record["ok"] for record in records} == {"int8-bf16": False, "int8": True}


def test_bench_fast_real_section_on_tiny_models(tmp_path, bf16_here):
    """`emolib bench --fast-real`'s path with tiny encoders on the fixture's real recordings: a row per variant (bf16 front end,
    all-ONNX int8, the static int8 front end tried), heads chosen without the test actors, and a section a later run replaces."""
    from emolib.bench import run as bench_run

    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\nkept text\n")
    results = bench_run.run_fast_real_bench(REAL.parent, out, tmp_path / "work", command="emolib bench --fast-real X", size="tiny",
                                            per_actor=25)
    assert results["clips"] == 50 and results["actors"] == 2 and results["test_actors"] == 1
    rows = results["rows"]
    nearest = "int8, weights rounded to nearest (before)"
    assert list(rows) == ["eager fp32", "int8-bf16", "int8", nearest, "static int8 conv front end (tried)"]
    assert rows["eager fp32"]["heads"]["calibrated"]["max_prob_diff"] == 0.0
    assert rows["eager fp32"]["heads"]["folds"] == {"max_prob_diff": 0.0, "same_top": 1.0, "changed_margins": []}
    assert results["folds"] == 2  # two actors: each scored by a head fitted on the other
    for name in ("int8-bf16", "int8"):
        assert rows[name]["min_cosine"] > 0.99 and rows[name]["used"].startswith("yes")
        folds = rows[name]["heads"]["folds"]
        assert len(folds["changed_margins"]) == round((1 - folds["same_top"]) * 50)
    assert rows["static int8 conv front end (tried)"]["used"] == rows[nearest]["used"] == "no"
    text = out.read_text()
    assert "kept text" in text and text.count("## The fast voice files on real speech") == 1 and "| int8-bf16 |" in text
    assert "speaker-disjoint folds" in text and f"| {nearest} |" in text
    goals = [line for line in text.splitlines() if "within 0.01:" in line]  # one verdict line per variant in use
    assert [line.split(":")[0] for line in goals] == ["- int8-bf16", "- int8"]
    bench_run.run_fast_real_bench(REAL.parent, out, tmp_path / "work", command="emolib bench --fast-real X", size="tiny", per_actor=25)
    assert out.read_text().count("## The fast voice files on real speech") == 1


def test_bench_fast_real_leaves_out_the_calibration_recordings(tmp_path):
    """The recordings the fast files are calibrated on (the packaged probes) are not among the clips they are measured on."""
    from emolib.bench.fastreal import ravdess_clips
    from emolib.fast.probes import PROBE_FOLDER, REAL_PREFIX, real_speech_names

    name = real_speech_names()[0]
    probe = PROBE_FOLDER / f"{REAL_PREFIX}{name}"
    folder = tmp_path / "ravdess" / f"Actor_{name.split('-')[-1].split('.')[0]}"
    folder.mkdir(parents=True)
    shutil.copy(probe, folder / name)
    parts = name.split("-")
    other = next(candidate for repetition in ("01", "02") for statement in ("01", "02")
                 if (candidate := "-".join(parts[:4] + [statement, repetition, parts[6]])) not in real_speech_names())
    shutil.copy(FIXTURE_CLIPS[0], folder / other)  # another recording of the same actor
    assert len(real_speech_names()) == 24
    assert [path.name for path in ravdess_clips(tmp_path, 60)] == [other]


def test_bench_profile_names_the_front_end(tmp_path, bf16_here):
    """The operator profile of an int8-bf16 voice file feeds its graph the front end's output and lists the front end's time."""
    from emolib.bench.latency import FRONT_END_ROWS, profiles

    predictor = Predictor.from_dir(make_untrained_models(tmp_path / "models"))
    voice = profiles(predictor)["voice"]
    names = [name for name, _ in voice]
    assert names[0] != "other operators" and set(FRONT_END_ROWS) <= set(names)
    assert all(milliseconds >= 0 for _, milliseconds in voice)


def test_a_full_bench_keeps_the_sections_other_commands_wrote(tmp_path):
    """`emolib bench` rewrites its own tables and keeps the rest: the fast-real section and the Kaggle rehearsal's figures
    (written from a GPU run, which no CPU run can make again)."""
    from emolib.bench import fastreal
    from emolib.bench.run import REHEARSAL, keep_sections

    out = tmp_path / "BENCHMARKS.md"
    rehearsal = f"{REHEARSAL[0]}\n## Kaggle rehearsal\n\nseconds per epoch on a T4\n{REHEARSAL[1]}"
    real = f"{fastreal.START}\n## The fast voice files on real speech\n{fastreal.END}"
    out.write_text(f"# Benchmarks\n\nold tables\n\n{real}\n\n{rehearsal}\n")
    text = keep_sections(out, "# Benchmarks\n\nnew tables\n")
    assert "new tables" in text and "old tables" not in text
    assert rehearsal in text and real in text
