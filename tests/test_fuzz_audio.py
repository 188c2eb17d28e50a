"""Random bytes into the audio loader: every outcome is audio or an AudioError naming the file,
never another exception or a hang (the fuzz budget is bounded by hypothesis' settings)."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from utils.audio import AudioError, audio_info, load_audio

# real headers followed by random bytes reach deeper into each decoder than noise alone
HEADERS = [b"", b"RIFF\x24\x08\x00\x00WAVEfmt ", b"fLaC\x00\x00\x00\x22", b"OggS\x00\x02",
           b"ID3\x03\x00\x00\x00", b"\xff\xfb\x90\x64", b"FORM\x00\x00\x00\x00AIFF"]
EXTENSIONS = [".wav", ".flac", ".ogg", ".mp3", ".aiff"]


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.sampled_from(HEADERS), body=st.binary(max_size=4096), ext=st.sampled_from(EXTENSIONS))
def test_random_bytes_give_audio_or_a_clear_error(tmp_path, header, body, ext):
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(header + body)
    for read in (lambda: audio_info(path), lambda: load_audio(path, 16000)):
        try:
            result = read()
        except AudioError as exc:
            assert str(path) in str(exc) and exc.reason
            continue
        if isinstance(result, np.ndarray):
            assert result.dtype == np.float32 and np.isfinite(result).all()
