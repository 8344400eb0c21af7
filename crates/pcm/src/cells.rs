//! The finished parts of a `pcm eval`, one JSON file each under
//! `EVAL_DIR/cells/`, so that an interrupted evaluation (10 000 samples per
//! cell are hours on a CPU) resumes where it stopped and computes every cell
//! exactly once.
//!
//! A file is reused only when everything that decides its numbers is the
//! same as now: the evaluation's [`Settings`] and the cell's [`CellKey`]
//! (which checkpoint, sampler, step count and guidance). Anything else is
//! recomputed and overwritten, so a changed model or budget can never leave
//! a stale number in the table. Files are written atomically.

use crate::classifier::ClassifierConfig;
use crate::eval::Row;
use crate::fid::Stats;
use crate::{PcmError, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What every cell of one evaluation shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub data: String,
    pub samples: usize,
    /// The sampling batch: each chunk has its own noise stream.
    pub batch: usize,
    pub seed: u64,
    pub precision: frugal_model::Precision,
    pub classifier: ClassifierConfig,
    pub classifier_accuracy: f64,
    pub teacher: String,
    pub teacher_step: u64,
    pub reference_steps: usize,
    pub teacher_cfg: f64,
}

/// One table cell: a model's checkpoint, sampled one way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellKey {
    pub model: String,
    pub step: u64,
    pub sampler: String,
    pub steps: usize,
    pub cfg: f64,
}

/// A finished cell: its row (without the FID against the teacher, which
/// needs the reference) and its features' statistics, from which that FID
/// is computed whenever the reference is at hand.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cell {
    pub row: Row,
    pub stats: Stats,
}

/// The teacher's reference samples, summarised.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    pub stats: Stats,
    pub fid_real: f64,
}

#[derive(Serialize, Deserialize)]
struct File<K, V> {
    settings: Settings,
    key: K,
    value: V,
}

pub struct Cells {
    dir: PathBuf,
    settings: Settings,
}

impl Cells {
    pub fn open(out: &Path, settings: Settings) -> Result<Self> {
        let dir = out.join("cells");
        std::fs::create_dir_all(&dir).map_err(|e| PcmError::io(&dir, e))?;
        Ok(Self { dir, settings })
    }

    pub fn reference(&self) -> Result<Option<Reference>> {
        self.get("reference", &())
    }

    pub fn save_reference(&self, r: &Reference) -> Result<()> {
        self.put("reference", &(), r)
    }

    /// The finished cell of `key`, stored under `name`.
    pub fn cell(&self, name: &str, key: &CellKey) -> Result<Option<Cell>> {
        self.get(name, key)
    }

    pub fn save_cell(&self, name: &str, key: &CellKey, cell: &Cell) -> Result<()> {
        self.put(name, key, cell)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn get<K, V>(&self, name: &str, key: &K) -> Result<Option<V>>
    where
        K: Serialize + DeserializeOwned + PartialEq,
        V: DeserializeOwned,
    {
        let path = self.path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PcmError::io(&path, e)),
        };
        // Unreadable or from other settings: recompute (and overwrite).
        Ok(serde_json::from_slice::<File<K, V>>(&bytes)
            .ok()
            .filter(|f| f.settings == self.settings && &f.key == key)
            .map(|f| f.value))
    }

    fn put<K: Serialize, V: Serialize>(&self, name: &str, key: &K, value: &V) -> Result<()> {
        let file = serde_json::json!({ "settings": self.settings, "key": key, "value": value });
        frugal_train::fsutil::write_atomic(&self.path(name), &serde_json::to_vec(&file)?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_dir::Kind;

    fn settings() -> Settings {
        Settings {
            data: "fashion-mnist".into(),
            samples: 100,
            batch: 50,
            seed: 0,
            precision: frugal_model::Precision::F32,
            classifier: ClassifierConfig::default(),
            classifier_accuracy: 0.9,
            teacher: "t".into(),
            teacher_step: 10,
            reference_steps: 50,
            teacher_cfg: 1.0,
        }
    }

    fn key() -> CellKey {
        CellKey {
            model: "runs/pcm4".into(),
            step: 400,
            sampler: "pcm".into(),
            steps: 4,
            cfg: 0.0,
        }
    }

    fn cell() -> Cell {
        let stats = Stats::of(&[vec![0.0, 1.0], vec![1.0, 3.0], vec![2.0, 2.0]]).unwrap();
        let row = Row {
            model: "pcm4".into(),
            kind: Kind::Pcm,
            phases: Some(4),
            sampler: "pcm".into(),
            steps: 4,
            fid_real: 12.5,
            fid_teacher: None,
            samples: 100,
            grid: "grids/pcm4-pcm-4.png".into(),
        };
        Cell { row, stats }
    }

    #[test]
    fn a_cell_is_reused_only_with_the_same_settings_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let cells = Cells::open(dir.path(), settings()).unwrap();
        assert!(cells.cell("pcm4-pcm-4", &key()).unwrap().is_none());
        cells.save_cell("pcm4-pcm-4", &key(), &cell()).unwrap();
        let back = cells.cell("pcm4-pcm-4", &key()).unwrap().unwrap();
        assert_eq!(back.row.fid_real, 12.5);
        assert_eq!(back.stats.cov, cell().stats.cov);
        // A newer checkpoint of the same model is a different cell.
        let newer = CellKey { step: 800, ..key() };
        assert!(cells.cell("pcm4-pcm-4", &newer).unwrap().is_none());
        // Another budget or seed invalidates every cell.
        for other in [
            Settings {
                samples: 200,
                ..settings()
            },
            Settings {
                seed: 1,
                ..settings()
            },
            Settings {
                teacher_step: 11,
                ..settings()
            },
        ] {
            let c = Cells::open(dir.path(), other).unwrap();
            assert!(c.cell("pcm4-pcm-4", &key()).unwrap().is_none());
        }
        // A damaged file is recomputed, not an error.
        std::fs::write(dir.path().join("cells/pcm4-pcm-4.json"), b"{").unwrap();
        assert!(cells.cell("pcm4-pcm-4", &key()).unwrap().is_none());
    }

    #[test]
    fn the_reference_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let cells = Cells::open(dir.path(), settings()).unwrap();
        assert!(cells.reference().unwrap().is_none());
        let stats = Stats::of(&[vec![0.0, 1.0], vec![1.0, 3.0], vec![2.0, 2.0]]).unwrap();
        cells
            .save_reference(&Reference {
                stats,
                fid_real: 7.0,
            })
            .unwrap();
        let r = cells.reference().unwrap().unwrap();
        assert_eq!(r.fid_real, 7.0);
        assert_eq!(r.stats.mean, vec![1.0, 2.0]);
    }
}
