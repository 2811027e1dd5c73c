//! Workflows that ship inside the binary and run by name with no file on
//! disk; a saved workflow of the same name wins.

use std::path::PathBuf;

use crate::error::RunError;
use crate::script::Script;
use crate::script::check::CheckOptions;

/// A bundled workflow.
#[derive(Debug)]
pub struct Bundled {
    /// The name it runs by (`wasmflow run deep-research`).
    pub name: &'static str,
    /// Its source.
    pub source: &'static str,
}

/// Every bundled workflow.
pub const BUNDLED: &[Bundled] = &[
    Bundled {
        name: "deep-research",
        source: include_str!("../../../../integrations/claude-code/workflows/deep-research.js"),
    },
    Bundled {
        name: "review",
        source: include_str!("../../../../integrations/claude-code/workflows/review.js"),
    },
];

/// The bundled workflow called `name` (or its slug).
pub fn find(name: &str) -> Option<&'static Bundled> {
    let slug = crate::script::slug(name);
    BUNDLED.iter().find(|b| b.name == slug)
}

impl Bundled {
    /// The checked script. Its path is its name, which is also what a
    /// resume of its runs looks up again.
    pub fn script(&self, options: CheckOptions) -> Result<Script, RunError> {
        Script::from_source(
            PathBuf::from(self.name),
            format!("{}.js", self.name),
            self.source.to_string(),
            options,
        )
    }
}
