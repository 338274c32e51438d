import numpy as np
import pytest

from emolib.audio import (
    MIN_SECONDS,
    SAMPLE_RATE,
    fixed_window,
    is_silent,
    load_audio,
    normalize_wave,
    to_model_rate,
)
from emolib.errors import AudioError

from media import sine, write_wav


def peak_hz(wave, sample_rate=SAMPLE_RATE):
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return np.fft.rfftfreq(len(wave), 1 / sample_rate)[spectrum.argmax()]


def load_error(path) -> str:
    with pytest.raises(AudioError) as caught:
        load_audio(path)
    message = str(caught.value)
    assert "\n" not in message
    assert path.name in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in load_error(tmp_path / "absent.wav")


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    assert "empty file" in load_error(path)


def test_truncated_wav(tmp_path):
    path = write_wav(tmp_path / "full.wav", sine(seconds=1.0))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[:10_000])
    assert "truncated" in load_error(cut)


def test_random_bytes_named_wav(tmp_path):
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    assert "not a readable audio file" in load_error(path)


def test_truncated_flac(tmp_path):
    path = write_wav(tmp_path / "full.flac", sine(seconds=1.0) + 0.01 * np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    cut = tmp_path / "cut.flac"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable audio file" in load_error(cut)


def test_wav_without_samples(tmp_path):
    path = write_wav(tmp_path / "nothing.wav", np.zeros(0, dtype=np.float32))
    assert "no audio samples" in load_error(path)


def test_too_short_clip(tmp_path):
    path = write_wav(tmp_path / "short.wav", sine(seconds=0.2))
    message = load_error(path)
    assert "0.20 s" in message and "shorter than the minimum" in message and f"{MIN_SECONDS:.2f}" in message


def test_nan_samples(tmp_path):
    wave = sine(seconds=1.0)
    wave[100:200] = np.nan
    path = write_wav(tmp_path / "nan.wav", wave, subtype="FLOAT")
    assert "NaN" in load_error(path)


def test_silence_loads_and_normalizes_finite(tmp_path):
    path = write_wav(tmp_path / "silence.wav", np.zeros(16000, dtype=np.float32))
    wave = load_audio(path)
    assert len(wave) == 16000 and is_silent(wave)
    assert np.isfinite(normalize_wave(wave)).all()
    window, valid = fixed_window(wave)
    assert np.isfinite(normalize_wave(window, valid)).all()
    assert not is_silent(sine())


def test_48khz_stereo_becomes_16khz_mono(tmp_path):
    left = sine(440, seconds=1.0, sample_rate=48000)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, 0.5 * left], axis=1), 48000)
    wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1 and len(wave) == 16000
    assert abs(peak_hz(wave) - 440) <= 2
    assert 0.3 < np.abs(wave).max() < 0.45


@pytest.mark.parametrize(
    "name, rate, subtype",
    [("u8.wav", 22050, "PCM_U8"), ("s24.wav", 44100, "PCM_24"), ("s32.wav", 16000, "PCM_32"), ("f.flac", 8000, "PCM_16"), ("d.wav", 32000, "DOUBLE")],
)
def test_formats_and_rates(tmp_path, name, rate, subtype):
    wave = load_audio(write_wav(tmp_path / name, sine(440, seconds=0.5, sample_rate=rate), rate, subtype))
    assert wave.dtype == np.float32 and len(wave) == 8000
    assert abs(peak_hz(wave) - 440) <= 4
    assert 0.45 < np.abs(wave).max() < 0.55


def test_to_model_rate_microphone_arrays():
    int16 = (sine(440, seconds=1.0, sample_rate=44100) * 32767).astype(np.int16)
    stereo = np.stack([int16, int16], axis=1)
    wave = to_model_rate(stereo, 44100)
    assert wave.dtype == np.float32 and len(wave) == 16000 and abs(peak_hz(wave) - 440) <= 2
    channels_first = to_model_rate(stereo.T.astype(np.float32) / 32768, 44100)
    np.testing.assert_allclose(channels_first, wave, atol=1e-4)
    assert to_model_rate(np.zeros(16000, np.float32), SAMPLE_RATE).shape == (16000,)
    with pytest.raises(AudioError, match="microphone: invalid sample rate"):
        to_model_rate(int16, 0, name="microphone")


def test_fixed_window_pads_short_clips():
    window, valid = fixed_window(np.ones(16000, np.float32))
    assert window.shape == (64000,) and valid == 16000
    assert window[:16000].all() and not window[16000:].any()


def test_fixed_window_crops_long_clips():
    wave = np.arange(96000, dtype=np.float32)
    window, valid = fixed_window(wave)
    assert valid == 64000 and window[0] == 16000 and window[-1] == 79999
    starts = {fixed_window(wave, random_crop=np.random.default_rng(seed))[0][0] for seed in range(20)}
    assert len(starts) > 1 and all(0 <= start <= 32000 for start in starts)
    again = fixed_window(wave, random_crop=np.random.default_rng(3))[0]
    np.testing.assert_array_equal(again, fixed_window(wave, random_crop=np.random.default_rng(3))[0])
    exact, valid = fixed_window(np.ones(64000, np.float32), seconds=4.0)
    assert valid == 64000 and len(exact) == 64000
    assert fixed_window(np.ones(100, np.float32), seconds=0.5, sample_rate=8000)[0].shape == (4000,)


def test_normalize_wave_matches_wav2vec2_feature_extractor():
    rng = np.random.default_rng(0)
    window, valid = fixed_window(rng.normal(0.3, 0.1, 20000).astype(np.float32))
    normed = normalize_wave(window, valid)
    assert abs(normed[:valid].mean()) < 1e-4 and abs(normed[:valid].std() - 1) < 1e-3
    assert not normed[valid:].any()
    part = window[:valid]
    np.testing.assert_allclose(normed[:valid], (part - part.mean()) / np.sqrt(part.var() + 1e-7), rtol=1e-5, atol=1e-5)
