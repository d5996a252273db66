//! A JSON Patch builder that only ever appends or sets object members, so a
//! patch never removes or reorders anything the pod already had.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use serde::Serialize;
use serde_json::Value;

/// JSON pointer from path segments; `/` and `~` in segments (annotation and
/// label keys) are escaped by jsonptr.
pub fn pointer<'a>(segments: impl IntoIterator<Item = &'a str>) -> PointerBuf {
    PointerBuf::from_tokens(segments)
}

#[derive(Debug, Default)]
pub struct PatchBuilder {
    ops: Vec<PatchOperation>,
}

impl PatchBuilder {
    pub fn add(&mut self, path: PointerBuf, value: Value) {
        self.ops
            .push(PatchOperation::Add(AddOperation { path, value }));
    }

    /// Serializes a k8s-openapi value; these types always serialize, so a
    /// failure would be a bug in the types, reported as `null` rather than a panic.
    pub fn add_typed<T: Serialize>(&mut self, path: PointerBuf, value: &T) {
        self.add(path, serde_json::to_value(value).unwrap_or(Value::Null));
    }

    /// Appends `item` to the array at `path`, creating the array when the pod has none.
    pub fn append<T: Serialize>(&mut self, path: PointerBuf, exists: bool, item: &T) {
        let item = serde_json::to_value(item).unwrap_or(Value::Null);
        if exists {
            self.add(path.with_trailing_token("-"), item);
        } else {
            self.add(path, Value::Array(vec![item]));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn build(self) -> Patch {
        Patch(self.ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes_slash_and_tilde() {
        let p = pointer(["metadata", "annotations", "example.com/a~b"]);
        assert_eq!(p.as_str(), "/metadata/annotations/example.com~1a~0b");
    }
}
