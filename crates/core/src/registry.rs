//! The one explicit list of methods a pipeline can call: connectors first, then user methods.

use pipeline_base::StepKind;
use pipeline_data::{MethodEntry, SystemEntry};

/// Methods by kind and name, and the systems connections can name.
pub struct Registry {
    entries: Vec<MethodEntry>,
    systems: Vec<SystemEntry>,
}

impl Registry {
    /// Every method shipped with pipectl.
    pub fn standard() -> Self {
        let mut entries = pipeline_connectors::entries();
        entries.extend(pipeline_methods::entries());
        Registry {
            entries,
            systems: pipeline_connectors::systems(),
        }
    }

    /// A registry of the given methods (tests, embedders with their own methods).
    pub fn from_entries(entries: Vec<MethodEntry>) -> Self {
        Registry {
            entries,
            systems: Vec::new(),
        }
    }

    /// Adds a system with its connection check.
    pub fn register_system(&mut self, system: SystemEntry) {
        self.systems.push(system);
    }

    pub fn system(&self, name: &str) -> Option<&SystemEntry> {
        self.systems.iter().find(|s| s.system == name)
    }

    pub fn systems(&self) -> &[SystemEntry] {
        &self.systems
    }

    /// Adds a method.
    pub fn register(&mut self, entry: MethodEntry) {
        self.entries.push(entry);
    }

    pub fn get(&self, kind: StepKind, name: &str) -> Option<&MethodEntry> {
        self.entries
            .iter()
            .find(|e| e.kind == kind && e.name == name)
    }

    /// The kinds that have a method of this name.
    pub fn kinds_of(&self, name: &str) -> Vec<StepKind> {
        self.entries
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.kind)
            .collect()
    }

    pub fn names(&self, kind: StepKind) -> Vec<&'static str> {
        self.entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.name)
            .collect()
    }

    pub fn entries(&self) -> &[MethodEntry] {
        &self.entries
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::standard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_per_kind() {
        let r = Registry::standard();
        for kind in StepKind::ALL {
            let mut names = r.names(kind);
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(n, names.len(), "duplicate {kind} method");
        }
        assert!(r.get(StepKind::Extract, "generate").is_some());
        assert_eq!(r.kinds_of("delta"), vec![StepKind::Extract, StepKind::Load]);
        assert!(r.system("kafka").is_some() && r.system("oracle").is_none());
        assert_eq!(Registry::default().entries().len(), r.entries().len());
    }

    #[test]
    fn an_embedder_builds_its_own() {
        let mut r = Registry::from_entries(pipeline_methods::entries());
        assert!(r.systems().is_empty());
        assert!(r.get(StepKind::Extract, "generate").is_none());
        let kafka = Registry::standard()
            .systems()
            .iter()
            .position(|s| s.system == "kafka")
            .unwrap();
        let mut systems = pipeline_connectors::systems();
        r.register_system(systems.swap_remove(kafka));
        assert_eq!(r.systems().len(), 1);
        assert!(r.system("kafka").is_some());
    }
}
