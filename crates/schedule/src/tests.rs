use super::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn warmup_starts_at_one_hundredth_and_reaches_peak() {
    assert!(close(linear_warmup(0, 300), 0.01));
    // n/W + (1 - n/W)/100 at n = 150, W = 300: 0.5 + 0.005
    assert!(close(linear_warmup(150, 300), 0.505));
    assert!(close(linear_warmup(300, 300), 1.0));
    assert!(close(linear_warmup(10, 0), 1.0));
}

/// Each shape at t = 0, 0.25, 0.5, 1 with f = 0.1, written out by hand.
#[test]
fn cooldown_shapes_match_their_formulas() {
    let f: f64 = 0.1;
    for &t in &[0.0, 0.25, 0.5, 0.81, 1.0] {
        let lin = f + (1.0 - f) * (1.0 - t);
        let cos = f + (1.0 - f) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0;
        assert!(close(CooldownShape::Linear.factor(t, f), lin));
        assert!(close(
            CooldownShape::OneMinusSqrt.factor(t, f),
            f + (1.0 - f) * (1.0 - t.sqrt())
        ));
        assert!(close(CooldownShape::Cosine.factor(t, f), cos));
        assert!(close(
            CooldownShape::MirrorCosine.factor(t, f),
            2.0 * lin - cos
        ));
        assert!(close(
            CooldownShape::Square.factor(t, f),
            f + (1.0 - f) * (1.0 - t * t)
        ));
        assert!(close(CooldownShape::Exp.factor(t, f), f.powf(t)));
    }
    // Concrete numbers: 1-sqrt at t = 0.25, f = 0 is 0.5; square is 0.9375.
    assert!(close(CooldownShape::OneMinusSqrt.factor(0.25, 0.0), 0.5));
    assert!(close(CooldownShape::Square.factor(0.25, 0.0), 0.9375));
    assert!(close(CooldownShape::Cosine.factor(0.5, 0.0), 0.5));
}

#[test]
fn wsd_matches_reference_layout() {
    // 1000 steps, 100 warmup, 20 % cooldown: constant from 100 to 799,
    // cooldown over steps 800..1000.
    let s = Schedule::wsd(100, 1000, 0.2, CooldownShape::OneMinusSqrt, 0.0).unwrap();
    assert!(close(s.multiplier(0), 0.01));
    assert!(close(s.multiplier(50), 0.5 + 0.5 / 100.0));
    assert!(close(s.multiplier(100), 1.0));
    assert!(close(s.multiplier(799), 1.0));
    assert!(close(s.multiplier(800), 1.0));
    assert!(close(s.multiplier(850), 1.0 - (0.25f64).sqrt()));
    assert!(close(s.multiplier(950), 1.0 - (0.75f64).sqrt()));
    assert!(close(s.multiplier(1000), 0.0));
    assert!(close(s.multiplier(5000), 0.0));
    assert_eq!(s.end(), Some(1000));
    // int(fract * N) like the reference: 0.15 * 999 = 149.85 -> 149 steps.
    let s = Schedule::wsd(0, 999, 0.15, CooldownShape::Linear, 0.0).unwrap();
    assert_eq!(s.cooldown.unwrap().start, 999 - 149);
}

#[test]
fn every_shape_in_wsd_at_several_steps() {
    for shape in CooldownShape::ALL {
        let f = 0.05;
        let s = Schedule::wsd(10, 200, 0.2, shape, f).unwrap();
        for step in [160u64, 170, 180, 199] {
            let t = (step - 160) as f64 / 40.0;
            assert!(
                close(s.multiplier(step), shape.factor(t, f)),
                "{shape} {step}"
            );
        }
        assert!(close(s.multiplier(200), f));
    }
}

#[test]
fn cosine_baseline_is_one_cycle_to_ten_percent() {
    let s = Schedule::cosine(100, 1000, 0.1).unwrap();
    assert!(close(s.multiplier(0), 0.01));
    // Peak at the end of warmup (step W-1), cosine-shaped.
    assert!(close(s.multiplier(99), 1.0));
    assert!(close(one_cycle(49, 100, 1000, 0.1), {
        let pct = 49.0 / 99.0;
        1.0 + (0.01 - 1.0) / 2.0 * (1.0 + (std::f64::consts::PI * pct).cos())
    }));
    // Halfway through the decay: (1 + 0.1)/2.
    let mid = 99 + (999 - 99) / 2;
    assert!(close(s.multiplier(mid), 0.55));
    assert!(close(s.multiplier(999), 0.1));
    assert_eq!(s.end(), Some(1000));
}

#[test]
fn a_branch_equals_a_wsd_run_with_the_same_cooldown() {
    // Constant run branched at step 800 with a 200-step cooldown is the WSD
    // schedule of 1000 steps with fraction 0.2, step for step.
    let wsd = Schedule::wsd(100, 1000, 0.2, CooldownShape::Cosine, 0.0).unwrap();
    let branch = Schedule::constant(100)
        .with_cooldown(Cooldown {
            start: 800,
            steps: 200,
            shape: CooldownShape::Cosine,
            final_factor: 0.0,
        })
        .unwrap();
    for step in 0..1100 {
        assert_eq!(wsd.multiplier(step), branch.multiplier(step));
    }
}

#[test]
fn branch_during_warmup_decays_from_current_lr() {
    let s = Schedule::constant(100)
        .with_cooldown(Cooldown {
            start: 50,
            steps: 10,
            shape: CooldownShape::Linear,
            final_factor: 0.0,
        })
        .unwrap();
    assert!(close(s.multiplier(50), linear_warmup(50, 100)));
    assert!(close(s.multiplier(55), linear_warmup(50, 100) * 0.5));
    assert!(close(s.multiplier(60), 0.0));
}

#[test]
fn bad_settings_are_errors() {
    assert!(Schedule::wsd(0, 10, 1.5, CooldownShape::Linear, 0.0).is_err());
    assert!(Schedule::wsd(0, 10, 0.2, CooldownShape::Exp, 0.0).is_err());
    assert!(Schedule::cosine(10, 10, 0.1).is_err());
    assert_eq!(
        "nope".parse::<CooldownShape>(),
        Err(ScheduleError::UnknownShape("nope".into()))
    );
    for shape in CooldownShape::ALL {
        assert_eq!(shape.name().parse::<CooldownShape>().unwrap(), shape);
    }
}
