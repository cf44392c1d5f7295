"""Audio model options: widths as typed on the command line, the log-mel floor, per-clip (instance)
normalisation, SpecAugment; the crop augmentation; and the pitch shift's length (no istft padding)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from cnnlab.data.audio.transforms import pitch_shift, time_stretch
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.audio import InstanceMelNorm, LogMel, SpecAugment


def test_widths_typed_as_a_comma_list_build_the_same_model() -> None:
    a = create_model("m5", widths="32,32", num_classes=3)  # the comma string, as a Python caller may give it
    b = create_model("m5", widths=[32, 32], num_classes=3)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    for bad in ("32,x", "32.5,8", [16, -1], "", 7):
        with pytest.raises(CnnlabError, match=r"widths=.* must be a list of positive integers"):
            create_model("m5", widths=bad)


def test_mel_options_need_the_mel_front_end() -> None:
    with pytest.raises(CnnlabError, match="frontend=mel"):
        create_model("m5", mel_norm="instance")
    with pytest.raises(CnnlabError, match="mel_norm='layer'"):
        create_model("m5", frontend="mel", mel_norm="layer")


def test_top_db_floors_silence_below_the_clip_s_peak() -> None:
    x = torch.zeros(2, 1, 4000)
    x[:, :, 1000:2000] = torch.sin(2 * math.pi * 500 * torch.arange(1000) / 8000)
    x[1] *= 0.1  # the same clip 20 dB quieter (still far above the log's eps)
    plain, floored = LogMel(8000, n_mels=20), LogMel(8000, n_mels=20, top_db=40)
    with torch.no_grad():
        a, b = plain(x), floored(x)
    assert a.min() < -13  # digital silence sits at log(eps) without the floor
    depth = (b.amax(dim=(1, 2)) - b.amin(dim=(1, 2))) * 10 / math.log(10)  # dB from each clip's peak to floor
    assert torch.allclose(depth, torch.tensor([40.0, 40.0]), atol=1e-3)
    assert torch.allclose(b[0] - b[0].amax(), b[1] - b[1].amax(), atol=0.05)  # level does not move the floor (eps: 3%)


def test_instance_norm_removes_a_fixed_colouring_of_each_band() -> None:
    torch.manual_seed(0)
    frames = torch.randn(3, 40, 50)
    colour = 5 * torch.randn(1, 40, 1)  # a microphone's gain per band, in log units (an offset)
    norm = InstanceMelNorm()
    assert torch.allclose(norm(frames), norm(frames + colour), atol=1e-4)
    out = norm(frames)
    assert torch.allclose(out.mean(dim=-1), torch.zeros(3, 40), atol=1e-5)
    assert torch.allclose(out.std(dim=-1, unbiased=False), torch.ones(3, 40), atol=1e-3)


def test_spec_augment_masks_in_training_only() -> None:
    torch.manual_seed(0)
    mask = SpecAugment(freq=6, time=10, masks=2)
    x = torch.ones(8, 40, 101)
    assert torch.equal(mask.eval()(x), x)
    y = mask.train()(x)
    dropped = (y == 0).float()
    assert 0 < dropped.mean() < 0.5
    # masks are whole bands or whole frames: a zero cell's band or frame is zero across the clip
    for i in range(8):
        rows = dropped[i].all(dim=1)  # bands masked at every frame
        cols = dropped[i].all(dim=0)  # frames masked in every band
        assert torch.equal(dropped[i].bool(), rows[:, None] | cols[None, :])
        assert rows.sum() <= 12 and cols.sum() <= 20


def test_mel_model_options_train_and_export_shapes() -> None:
    model = create_model("m5", num_classes=10, frontend="mel", mel_norm="instance", top_db=25, freq_mask=4,
                         time_mask=8, widths=[32, 32, 64])
    x = torch.randn(4, 1, 8000)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no masks at evaluation
    assert model(x).shape == (4, 10)


@pytest.mark.parametrize("semitones", [-3.0, -1.3, 0.7, 2.0])
@pytest.mark.parametrize("length", [300, 1147, 4999])
def test_pitch_shift_keeps_the_length_and_fills_the_tail(semitones: float, length: int) -> None:
    x = torch.randn(1, length)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # istft warned when the vocoder gave it too few frames
        y = pitch_shift(x, semitones)
        z = time_stretch(x, 2 ** (semitones / 12))
    assert y.shape == x.shape
    assert z.shape[-1] == round(length / 2 ** (semitones / 12))
    assert y[0, -64:].abs().max() > 0  # not zero padding


def test_pitch_shift_moves_a_sine() -> None:
    rate = 8000
    x = torch.sin(2 * math.pi * 440 * torch.arange(rate) / rate)[None]
    for semitones in (-3.0, 2.0):
        y = pitch_shift(x, semitones)[0]
        peak = torch.fft.rfft(y * torch.hann_window(rate)).abs().argmax().item()  # 1 Hz bins
        assert abs(peak - 440 * 2 ** (semitones / 12)) <= 2


def test_crop_cuts_each_end_by_at_most_its_fraction() -> None:
    from cnnlab.data.audio.transforms import WaveAugment

    wave = torch.arange(1000, dtype=torch.float32)[None]  # each sample names its position
    gen = torch.Generator().manual_seed(0)
    out = WaveAugment(speed=0.0, gain=0.0, crop=0.2).clips([wave] * 50, gen)
    lengths = torch.tensor([o.shape[-1] for o in out])
    assert lengths.min() >= 600 and lengths.max() <= 1000 and lengths.float().std() > 10
    for o in out:  # a contiguous piece of the clip, cut no more than 200 samples at either end
        first, last = int(o[0, 0]), int(o[0, -1])
        assert torch.equal(o[0], torch.arange(first, last + 1, dtype=torch.float32))
        assert first <= 200 and last >= 799
    # without crop the generator's draws are what they always were (older runs replay exactly)
    a, b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    WaveAugment(speed=0.1).clips([wave], a)
    torch.rand(2, generator=b)  # the speed and pitch draws of one clip
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_the_task_checks_crop() -> None:
    from cnnlab.tasks import get_task

    assert get_task("audio", crop=0.1).options()["crop"] == 0.1
    with pytest.raises(CnnlabError, match=r"crop=0.5: the largest fraction cut from each end"):
        get_task("audio", crop=0.5)
