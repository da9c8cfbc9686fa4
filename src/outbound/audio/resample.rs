//! Sample-rate conversion (rubato's FFT resampler, fed in chunks) and channel layout changes
//! (downmix to mono, up- or downmix to stereo) over interleaved `f32` PCM. Both work as a
//! stream, so converting hours of audio holds no more than a chunk of it.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use crate::domain::audio::AudioError;

/// Frames per FFT chunk: large enough to be efficient, small enough to keep the delay short.
const CHUNK_FRAMES: usize = 1024;

/// Calls in a row that make no frame after which finishing stops asking the resampler.
const MAX_IDLE_CALLS: usize = 4;

/// Where converted samples go (an encoder, a buffer); interleaved, whole frames.
pub type PcmSink<'a> = &'a mut dyn FnMut(&[f32]) -> Result<(), AudioError>;

/// Resamples interleaved audio from `from_rate` to `to_rate` Hz; the output has
/// `frames * to_rate / from_rate` frames (rounded up), without the resampler's delay.
///
/// # Errors
/// [`AudioError::Encoding`] for a zero rate or channel count, or when rubato fails.
pub fn resample(samples: &[f32], channels: u16, from_rate: u32, to_rate: u32) -> Result<Vec<f32>, AudioError> {
    if from_rate == to_rate {
        return Ok(samples.to_vec());
    }
    let mut resampler = StreamResampler::new(channels, from_rate, to_rate)?;
    let expected = usize::try_from(resampler_output_len(samples.len(), channels, from_rate, to_rate)).unwrap_or(0);
    let mut out = Vec::with_capacity(expected);
    let mut collect = |chunk: &[f32]| {
        out.extend_from_slice(chunk);
        Ok(())
    };
    resampler.push(samples, &mut collect)?;
    resampler.finish(&mut collect)?;
    Ok(out)
}

/// The samples `samples` interleaved samples become at `to_rate`.
fn resampler_output_len(samples: usize, channels: u16, from_rate: u32, to_rate: u32) -> u64 {
    let ch = u64::from(channels.max(1));
    let frames = samples as u64 / ch;
    (frames * u64::from(to_rate)).div_ceil(u64::from(from_rate.max(1))) * ch
}

/// A resampler fed any number of samples at a time: it keeps less than one chunk of input
/// and one chunk of output, drops the FFT's delay from the start and, once finished, has
/// given exactly `frames * to_rate / from_rate` frames (rounded up), as a whole-clip
/// conversion would. Equal rates pass the samples through.
pub struct StreamResampler {
    fft: Option<Box<Fft<f32>>>,
    channels: usize,
    from_rate: u64,
    to_rate: u64,
    /// Input not yet consumed, interleaved.
    pending: Vec<f32>,
    /// The resampler's output for one call, interleaved.
    output: Vec<f32>,
    /// Output frames still to drop: the resampler's delay.
    delay: usize,
    frames_in: u64,
    frames_out: u64,
}

impl StreamResampler {
    /// A resampler of `channels` interleaved channels from `from_rate` to `to_rate` Hz. The
    /// caller bounds the rates (an absurd rate sizes the FFT after it).
    ///
    /// # Errors
    /// [`AudioError::Encoding`] for a zero rate or channel count, or when rubato refuses.
    pub fn new(channels: u16, from_rate: u32, to_rate: u32) -> Result<Self, AudioError> {
        if from_rate == 0 || to_rate == 0 || channels == 0 {
            return Err(AudioError::Encoding(format!(
                "cannot resample {channels} channels from {from_rate} Hz to {to_rate} Hz"
            )));
        }
        let ch = usize::from(channels);
        let fft = if from_rate == to_rate {
            None
        } else {
            let to_u = |rate: u32| usize::try_from(rate).unwrap_or(usize::MAX);
            let fft = Fft::<f32>::new(to_u(from_rate), to_u(to_rate), CHUNK_FRAMES, ch, FixedSync::Input)
                .map_err(|e| AudioError::Encoding(format!("resampler: {e}")))?;
            Some(Box::new(fft))
        };
        let delay = fft.as_ref().map_or(0, |fft| fft.output_delay());
        Ok(Self {
            fft,
            channels: ch,
            from_rate: u64::from(from_rate),
            to_rate: u64::from(to_rate),
            pending: Vec::new(),
            output: Vec::new(),
            delay,
            frames_in: 0,
            frames_out: 0,
        })
    }

    /// Converts `samples` (interleaved; a trailing partial frame is dropped), handing what is
    /// ready to `out`.
    ///
    /// # Errors
    /// [`AudioError::Encoding`] when rubato fails; `out`'s own errors.
    pub fn push(&mut self, samples: &[f32], out: PcmSink<'_>) -> Result<(), AudioError> {
        let whole = &samples[..samples.len() - samples.len() % self.channels];
        self.frames_in += (whole.len() / self.channels) as u64;
        if self.fft.is_none() {
            self.frames_out += (whole.len() / self.channels) as u64;
            return out(whole);
        }
        self.pending.extend_from_slice(whole);
        let mut consumed = 0;
        while let Some(fft) = &self.fft {
            let needed = fft.input_frames_next();
            if self.pending.len() / self.channels - consumed < needed {
                break;
            }
            consumed += self.process(consumed, None, u64::MAX, out)?.0;
        }
        self.pending.drain(..consumed * self.channels);
        Ok(())
    }

    /// Converts what is left (padded with silence) and hands `out` the last frames, up to the
    /// exact length.
    ///
    /// # Errors
    /// As [`Self::push`].
    pub fn finish(mut self, out: PcmSink<'_>) -> Result<(), AudioError> {
        if self.fft.is_none() {
            return Ok(());
        }
        let expected = (self.frames_in * self.to_rate).div_ceil(self.from_rate);
        let left = self.pending.len() / self.channels;
        if left > 0 {
            self.process(0, Some(left), expected, out)?;
            self.pending.clear();
        }
        // Silence pushes the last real frames out past the delay. Between some rates a call
        // can make no frame at all; after a few such calls the frames still owed (less than
        // the resampler's delay and a chunk) are silence, and are written as such.
        let mut idle_calls = 0;
        while self.frames_out < expected && idle_calls < MAX_IDLE_CALLS {
            if self.process(0, Some(0), expected, out)?.1 == 0 {
                idle_calls += 1;
            } else {
                idle_calls = 0;
            }
        }
        let mut owed = usize::try_from(expected.saturating_sub(self.frames_out)).unwrap_or(0);
        if owed > 0 {
            let silence = vec![0.0; CHUNK_FRAMES.min(owed) * self.channels];
            while owed > 0 {
                let frames = CHUNK_FRAMES.min(owed);
                out(&silence[..frames * self.channels])?;
                owed -= frames;
            }
            self.frames_out = expected;
        }
        Ok(())
    }

    /// One call of the resampler on `pending` from frame `offset` (`partial`: only that many
    /// frames are real input), handing `out` what is past the delay, at most up to `limit`
    /// frames in all. Returns the input frames consumed and the output frames made.
    fn process(
        &mut self,
        offset: usize,
        partial: Option<usize>,
        limit: u64,
        out: PcmSink<'_>,
    ) -> Result<(usize, usize), AudioError> {
        let Some(fft) = self.fft.as_mut() else {
            return Ok((0, 0));
        };
        let ch = self.channels;
        let capacity = fft.output_frames_max();
        self.output.resize(capacity * ch, 0.0);
        let frames = self.pending.len() / ch;
        let input = InterleavedSlice::new(&self.pending[..frames * ch], ch, frames)
            .map_err(|e| AudioError::Encoding(format!("resampler input: {e}")))?;
        let mut output = InterleavedSlice::new_mut(&mut self.output[..], ch, capacity)
            .map_err(|e| AudioError::Encoding(format!("resampler output: {e}")))?;
        let indexing = Indexing {
            input_offset: offset,
            output_offset: 0,
            partial_len: partial,
            active_channels_mask: None,
        };
        let (used, made) = fft
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|e| AudioError::Encoding(format!("resampling: {e}")))?;
        let skipped = self.delay.min(made);
        self.delay -= skipped;
        let room = usize::try_from(limit.saturating_sub(self.frames_out)).unwrap_or(usize::MAX);
        let keep = (made - skipped).min(room);
        if keep > 0 {
            self.frames_out += keep as u64;
            out(&self.output[skipped * ch..(skipped + keep) * ch])?;
        }
        Ok((used, made))
    }
}

/// Brings audio of any rate and channel count to one format, as a stream: each run of
/// samples in one format goes through its own resampler, finished when the format changes
/// (MP3 files of different formats joined together, a chained Ogg stream).
pub struct Conformer {
    rate: u32,
    channels: u16,
    run: Option<(u32, u16, StreamResampler)>,
}

impl Conformer {
    /// Converts to `rate` Hz and `channels` channels.
    pub fn new(rate: u32, channels: u16) -> Self {
        Self {
            rate,
            channels: channels.max(1),
            run: None,
        }
    }

    /// Converts `samples` of `rate` Hz and `channels` channels, handing what is ready to `out`.
    ///
    /// # Errors
    /// [`AudioError::Encoding`] when resampling fails; `out`'s own errors.
    pub fn push(&mut self, rate: u32, channels: u16, samples: &[f32], out: PcmSink<'_>) -> Result<(), AudioError> {
        let same_run = matches!(&self.run, Some((r, c, _)) if *r == rate && *c == channels);
        if !same_run {
            if let Some((_, _, previous)) = self.run.take() {
                previous.finish(out)?;
            }
            self.run = Some((rate, channels, StreamResampler::new(self.channels, rate, self.rate)?));
        }
        let Some((_, _, resampler)) = self.run.as_mut() else {
            return Ok(());
        };
        if channels == self.channels {
            resampler.push(samples, out)
        } else {
            resampler.push(&remix(samples, channels, self.channels), out)
        }
    }

    /// Hands `out` the last converted frames.
    ///
    /// # Errors
    /// As [`Self::push`].
    pub fn finish(self, out: PcmSink<'_>) -> Result<(), AudioError> {
        match self.run {
            Some((_, _, resampler)) => resampler.finish(out),
            None => Ok(()),
        }
    }
}

/// Converts interleaved audio from `from` channels to `to` channels: the same layout is
/// copied, one channel is duplicated, several are averaged to mono, and for stereo output
/// from more channels the first two are kept.
pub fn remix(samples: &[f32], from: u16, to: u16) -> Vec<f32> {
    let (from_ch, to_ch) = (usize::from(from.max(1)), usize::from(to.max(1)));
    if from_ch == to_ch {
        return samples.to_vec();
    }
    let frames = samples.chunks_exact(from_ch);
    let mut out = Vec::with_capacity(frames.len() * to_ch);
    for frame in frames {
        if to_ch == 1 {
            out.push(frame.iter().sum::<f32>() / from_ch as f32);
        } else if from_ch == 1 {
            out.extend(std::iter::repeat_n(frame[0], to_ch));
        } else {
            out.extend((0..to_ch).map(|c| frame.get(c).copied().unwrap_or(0.0)));
        }
    }
    out
}

/// Averages the channels of interleaved audio into one.
pub fn downmix_to_mono(samples: &[f32], channels: u16) -> Vec<f32> {
    remix(samples, channels, 1)
}

/// Makes interleaved audio stereo (mono is duplicated, more channels keep the first two).
pub fn to_stereo(samples: &[f32], channels: u16) -> Vec<f32> {
    remix(samples, channels, 2)
}
