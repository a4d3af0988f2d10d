//! [`TaskId`]: a task's id, one string shared by every place that names the task (its
//! record, the submission order, the ready queue, its events, the store's batch), where a
//! `String` would be a copy of its own in each. A queued task is named in three to five
//! places, so this counts for every task a server holds.

use std::{borrow::Borrow, fmt, ops::Deref, sync::Arc};

/// Reads as a `str`; cloning it shares the string.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(Arc<str>);

impl TaskId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::from("")
    }
}

impl Deref for TaskId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TaskId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TaskId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for TaskId {
    fn from(id: &str) -> Self {
        Self(id.into())
    }
}

impl From<String> for TaskId {
    fn from(id: String) -> Self {
        Self(id.into())
    }
}

impl From<&String> for TaskId {
    fn from(id: &String) -> Self {
        Self(id.as_str().into())
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> Self {
        id.0.as_ref().into()
    }
}

impl From<&TaskId> for String {
    fn from(id: &TaskId) -> Self {
        id.0.as_ref().into()
    }
}

impl PartialEq<str> for TaskId {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for TaskId {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for TaskId {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<TaskId> for str {
    fn eq(&self, other: &TaskId) -> bool {
        *self == *other.0
    }
}

impl PartialEq<TaskId> for &str {
    fn eq(&self, other: &TaskId) -> bool {
        **self == *other.0
    }
}

impl PartialEq<TaskId> for String {
    fn eq(&self, other: &TaskId) -> bool {
        **self == *other.0
    }
}

impl serde::Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskId;

    #[test]
    fn a_clone_shares_the_string_and_reads_and_compares_as_one() {
        let id = TaskId::from("t-1");
        let copy = id.clone();
        assert!(std::ptr::eq(id.as_str(), copy.as_str()), "one string");
        assert_eq!(copy, "t-1");
        assert_eq!(String::from(copy), "t-1");
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, "\"t-1\"");
        assert_eq!(serde_json::from_str::<TaskId>(&json).expect("read"), id);
        let table = std::collections::HashMap::from([(id, 1)]);
        assert_eq!(table.get("t-1"), Some(&1), "found by a str");
    }
}
