//! The work graph and its FLOPs for a small spec, checked by hand.

use frugal_model::flops::training_flops_per_token;
use frugal_study::plan::{Family, JobAction, Plan};
use frugal_study::StudySpec;
use std::path::PathBuf;

const SPEC: &str = r#"
families = ["wsd", "cosine"]
[[size]]
name = "a"
preset = "nano"
[[size]]
name = "b"
d_model = 32
n_layers = 1
n_heads = 2
[budgets]
tokens = [1280, 2560, 5120]
[wsd]
lr = 1e-3
cooldown_fraction = 0.2
swa = { interval = 2, horizon = 8 }
[cosine]
lr = 2e-3
[base]
data = { dataset = "/nonexistent" }
train = { seq_len = 32, batch_size = 4 }
schedule = { warmup_steps = 2 }
"#;

#[test]
fn graph_and_flops_by_hand() {
    let spec = StudySpec::from_toml(SPEC).unwrap();
    let plan = Plan::build(&spec, &[], 512).unwrap();
    // Per size: 1 constant run + 3 branches + 3 cosine runs.
    assert_eq!(plan.jobs.len(), 14);
    let c = plan.get("a-const").unwrap();
    let JobAction::Train { config } = &c.action else {
        panic!("constant run is a train job")
    };
    // 128 tokens per step: budgets of 10, 20, 40 steps; 20 % cooldowns of
    // 2, 4, 8 steps branch at 8, 16, 32, where the constant run checkpoints.
    assert_eq!(config.train.steps, 40);
    assert_eq!(config.checkpoint.at, vec![8, 16, 32]);
    assert_eq!(config.train.lr, 1e-3);
    assert!(config.averaging.swa.is_some());
    let b = plan.get("a-wsd-20").unwrap();
    assert_eq!(
        b.action,
        JobAction::Cooldown {
            parent: "a-const".into(),
            from_step: 16,
            steps: 4,
            shape: frugal_schedule::CooldownShape::OneMinusSqrt,
            final_factor: 0.0
        }
    );
    assert_eq!(
        b.needs,
        Some(PathBuf::from("runs/a-const/checkpoints/step-0000016"))
    );
    assert_eq!((b.total_tokens, b.final_step), (2560, 20));
    let cos = plan.get("b-cos-40").unwrap();
    let JobAction::Train { config } = &cos.action else {
        panic!("cosine run is a train job")
    };
    assert_eq!(config.train.lr, 2e-3);
    assert!(config.averaging.is_off());

    // FLOPs: wsd = 40 + (2 + 4 + 8) = 54 steps per size, cosine = 70.
    let mut wsd = 0.0;
    let mut cosine = 0.0;
    for size in &spec.sizes {
        let m = spec
            .run_config(size, &[])
            .unwrap()
            .model_config(512)
            .unwrap();
        let per_step = training_flops_per_token(&m, 32) * 128.0;
        wsd += 54.0 * per_step;
        cosine += 70.0 * per_step;
    }
    let rel = |a: f64, b: f64| ((a - b) / b).abs();
    assert!(rel(plan.family_flops(Family::Wsd), wsd) < 1e-12);
    assert!(rel(plan.family_flops(Family::Cosine), cosine) < 1e-12);
    assert!((plan.saving().unwrap() - (1.0 - 54.0 / 70.0)).abs() < 1e-12);
    let text = plan.describe();
    assert!(text.contains("wsd saves 22.9 %"), "{text}");
}

#[test]
fn bad_specs_are_errors() {
    let e = |s: &str| StudySpec::from_toml(s).unwrap_err().to_string();
    assert!(e(&SPEC.replace("\"cosine\"]", "\"linear\"]")).contains("linear"));
    assert!(
        e(&SPEC.replace("tokens = [", "tokens_per_param = [1]\ntokens = ["))
            .contains("exactly one")
    );
    let spec = StudySpec::from_toml(&SPEC.replace("[1280,", "[128,")).unwrap();
    // One step is not longer than the warmup.
    assert!(Plan::build(&spec, &[], 512)
        .unwrap_err()
        .to_string()
        .contains("warmup"));
}
