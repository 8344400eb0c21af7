//! Helpers shared by the integration tests.
#![allow(dead_code)]

use frugal_fit::{exclude_top_loss, load_observations, Columns, Observation};

/// The digitised Chinchilla data (Besiroglu et al. 2024), copied from
/// shared/data so the tests do not depend on the checkout's surroundings.
pub const CHINCHILLA_CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/chinchilla_svg_extracted_data.csv"
);

pub const SCIPY_FIT_JSON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/chinchilla_scipy_fit.json"
);

/// All 245 points, D = C / (6 N).
pub fn chinchilla_all() -> Vec<Observation> {
    let columns = Columns::parse("Model Size,Training FLOP,loss").expect("valid mapping");
    load_observations(CHINCHILLA_CSV, &columns).expect("fixture loads")
}

/// The 240 points Besiroglu et al. fit (5 highest losses dropped).
pub fn chinchilla() -> Vec<Observation> {
    exclude_top_loss(&chinchilla_all(), 5)
}
