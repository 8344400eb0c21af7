//! Named model shapes: the eight sizes of Hägele et al. 2024 and tiny sizes
//! that train in minutes on two CPU cores.

use crate::config::{swiglu_hidden, LlamaConfig};
use crate::{ModelError, Result};

/// A shape without a vocabulary (that comes from the tokenizer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub ffn_hidden: usize,
}

const fn p(name: &'static str, d: usize, l: usize, h: usize, f: usize) -> Preset {
    Preset {
        name,
        d_model: d,
        n_layers: l,
        n_heads: h,
        ffn_hidden: f,
    }
}

/// Every preset. Paper sizes are named by their parameter count with the
/// GPT-2 vocabulary padded to 50304; the FFN widths are the paper's table.
pub const PRESETS: &[Preset] = &[
    // Tiny CPU sizes (≈ 0.5 M – 20 M parameters with an 8 K vocabulary).
    p("nano", 64, 2, 4, 256),
    p("micro", 128, 4, 4, 512),
    p("mini", 192, 6, 6, 512),
    p("small", 256, 6, 8, 768),
    p("medium", 384, 8, 6, 1024),
    // The paper's sizes (papers.md §1).
    p("33m", 384, 8, 6, 1024),
    p("53m", 512, 8, 8, 1536),
    p("60m", 512, 10, 8, 1536),
    p("93m", 640, 12, 10, 1792),
    p("124m", 768, 12, 12, 2048),
    p("151m", 768, 16, 12, 2048),
    p("210m", 768, 24, 12, 2048),
    p("360m", 1024, 24, 16, 2816),
];

/// The reference's vocabulary: GPT-2's 50257 padded to a multiple of 64.
pub const PAPER_VOCAB: usize = 50_304;

pub fn preset(name: &str) -> Result<Preset> {
    let key = name.to_ascii_lowercase();
    PRESETS
        .iter()
        .find(|p| p.name == key)
        .copied()
        .ok_or_else(|| ModelError::UnknownPreset {
            name: name.to_string(),
            known: PRESETS
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Preset {
    pub fn config(&self, vocab_size: usize, max_seq_len: usize) -> LlamaConfig {
        let mut c = LlamaConfig::new(vocab_size, self.d_model, self.n_layers, self.n_heads);
        c.ffn_hidden = self.ffn_hidden;
        c.max_seq_len = max_seq_len;
        c
    }

    /// Whether the FFN width is the `8/3·d` rule (true for all but `mini`/`nano`).
    pub fn follows_swiglu_rule(&self) -> bool {
        self.ffn_hidden == swiglu_hidden(self.d_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parameter counts of the paper presets (vocab 50304, tied embedding
    /// counted once), computed by hand: V·d + L·(4d² + 3dF + 2d) + d.
    #[test]
    fn paper_preset_parameter_counts() {
        let expect = [
            ("33m", 384, 8, 1024),
            ("53m", 512, 8, 1536),
            ("60m", 512, 10, 1536),
            ("93m", 640, 12, 1792),
            ("124m", 768, 12, 2048),
            ("151m", 768, 16, 2048),
            ("210m", 768, 24, 2048),
            ("360m", 1024, 24, 2816),
        ];
        for (name, d, l, f) in expect {
            let c = preset(name).unwrap().config(PAPER_VOCAB, 512);
            let by_hand = PAPER_VOCAB * d + l * (4 * d * d + 3 * d * f + 2 * d) + d;
            assert_eq!(c.param_count(), by_hand, "{name}");
        }
        // Spot values: the names are the rounded millions.
        let m = |n: &str| preset(n).unwrap().config(PAPER_VOCAB, 512).param_count();
        assert_eq!(m("33m"), 33_479_040);
        assert_eq!(m("124m"), 123_587_328);
        assert_eq!(m("360m"), 359_842_816);
        for (name, millions) in [
            ("53m", 53),
            ("60m", 60),
            ("93m", 93),
            ("151m", 152), // 151.9 M: the paper rounds down
            ("210m", 209),
        ] {
            assert_eq!((m(name) as f64 / 1e6).round() as usize, millions, "{name}");
        }
    }

    #[test]
    fn swiglu_rule_matches_paper_widths() {
        assert_eq!(swiglu_hidden(384), 1024);
        assert_eq!(swiglu_hidden(512), 1536);
        assert_eq!(swiglu_hidden(640), 1792);
        assert_eq!(swiglu_hidden(768), 2048);
        assert_eq!(swiglu_hidden(1024), 2816);
    }

    #[test]
    fn tiny_presets_span_half_to_twenty_million() {
        let vocab = 8192;
        let n = |name: &str| preset(name).unwrap().config(vocab, 256).param_count();
        assert!(
            n("nano") >= 400_000 && n("nano") < 1_000_000,
            "{}",
            n("nano")
        );
        assert!(n("medium") > 10_000_000 && n("medium") <= 20_000_000);
        assert!(preset("NoSuch").is_err());
        assert!(preset("124M").is_ok());
    }
}
