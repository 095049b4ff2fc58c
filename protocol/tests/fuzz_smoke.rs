//! Stable-Rust smoke run of the fuzz targets (`fuzz/`, which needs nightly + cargo-fuzz).
//!
//! Feeds `burrow_protocol::fuzzing::{decode_frame_target, validate_target}` — the very
//! functions the cargo-fuzz targets call — a deterministic corpus: the seed frames, a few
//! thousand mutations of them, random bytes and MessagePack-looking token soup. Same
//! inputs on every run, so a failure here is reproducible; `FUZZ_SMOKE_SEED=<n>` and
//! `FUZZ_SMOKE_INPUTS=<n>` explore further.

use burrow_protocol::codec::{self, HEADER_BYTES};
use burrow_protocol::fuzzing;

/// splitmix64: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.byte()).collect()
    }

    fn token(&mut self) -> &'static [u8] {
        fuzzing::DICTIONARY[self.below(fuzzing::DICTIONARY.len())]
    }
}

/// Applies one random mutation in place.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    let at = |rng: &mut Rng, data: &Vec<u8>| rng.below(data.len() + 1);
    match rng.below(11) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = rng.byte();
        }
        2 => {
            let i = at(rng, data);
            data.insert(i, rng.byte());
        }
        3 => {
            let i = at(rng, data);
            let token = rng.token();
            data.splice(i..i, token.iter().copied());
        }
        4 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(16));
            data.drain(i..i + n);
        }
        5 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(16));
            let copy = data[i..i + n].to_vec();
            let j = at(rng, data);
            data.splice(j..j, copy);
        }
        6 => {
            let cut = at(rng, data);
            data.truncate(cut);
        }
        7 => {
            let extra = rng.bytes(16);
            data.extend_from_slice(&extra);
        }
        8 => {
            // Splice the tail of another seed in.
            let other = &seeds[rng.below(seeds.len())];
            let from = rng.below(other.len());
            let cut = at(rng, data);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        9 if data.len() >= HEADER_BYTES => {
            // Rewrite the length header: near the truth, or anything.
            let body = (data.len() - HEADER_BYTES) as i64;
            let len = match rng.below(3) {
                0 => (body + rng.below(9) as i64 - 4).max(0) as u32,
                1 => rng.below(256) as u32,
                _ => rng.next() as u32,
            };
            data[..HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
        }
        _ => {
            // Replace an integer-looking byte with an interesting value.
            if !data.is_empty() {
                let i = rng.below(data.len());
                data[i] = [0x00, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xcf, 0xdc, 0xdd, 0xde, 0xdf]
                    [rng.below(11)];
            }
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Both targets on one input; says which input when a target panics.
fn run(label: &str, i: usize, input: &[u8]) {
    let result = std::panic::catch_unwind(|| {
        fuzzing::decode_frame_target(input);
        fuzzing::validate_target(input);
        if input.len() >= HEADER_BYTES {
            fuzzing::validate_target(&input[HEADER_BYTES..]);
        }
    });
    // The panic itself was printed by the hook; name the input so it can be replayed.
    assert!(result.is_ok(), "{label} input #{i} failed: {input:02x?}");
}

#[test]
fn fuzz_targets_survive_a_deterministic_corpus() {
    let mut rng = Rng(env_u64("FUZZ_SMOKE_SEED", 0x6275_7272_6f77));
    let inputs = env_u64("FUZZ_SMOKE_INPUTS", 10_000) as usize;
    let seeds = fuzzing::seed_frames();
    let mut decoded_ok = 0usize;

    for (i, seed) in seeds.iter().enumerate() {
        run("seed", i, seed);
        let (result, used) = codec::decode_frame(seed, codec::MAX_FRAME_BYTES).unwrap();
        assert!(result.is_ok() && used == seed.len(), "seed #{i} must be valid");
    }

    for i in 0..inputs {
        let input = match i % 8 {
            // Random bytes, with and without a plausible header.
            0 => rng.bytes(96),
            1 => {
                let body = rng.bytes(64);
                let mut f = (body.len() as u32).to_be_bytes().to_vec();
                f.extend_from_slice(&body);
                f
            }
            // MessagePack token soup, framed.
            2 => {
                let body: Vec<u8> =
                    (0..1 + rng.below(24)).flat_map(|_| rng.token().to_vec()).collect();
                let mut f = (body.len() as u32).to_be_bytes().to_vec();
                f.extend_from_slice(&body);
                f
            }
            // Mutated seeds (several mutations stacked), sometimes two frames back to back.
            _ => {
                let mut data = seeds[rng.below(seeds.len())].clone();
                if rng.below(6) == 0 {
                    data.extend_from_slice(&seeds[rng.below(seeds.len())]);
                }
                for _ in 0..1 + rng.below(4) {
                    mutate(&mut rng, &mut data, &seeds);
                }
                data
            }
        };
        if let Some((Ok(_), _)) = codec::decode_frame(&input, codec::MAX_FRAME_BYTES) {
            decoded_ok += 1;
        }
        run("generated", i, &input);
    }

    eprintln!("fuzz smoke: {decoded_ok} of {inputs} generated inputs decoded as a message");
    // The corpus must exercise both paths, or it tests nothing.
    assert!(decoded_ok > inputs / 50, "only {decoded_ok} of {inputs} inputs decoded");
    assert!(decoded_ok < inputs / 2, "{decoded_ok} of {inputs} inputs decoded");
}
